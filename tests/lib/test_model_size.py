"""Tests of lmbook.model_size: the parts add up to count_parameters' total, counted by hand for GPT-2 small, and
size_estimate is the book's own counters (count_parameters, count_flops, training_memory, training_flops)."""

import pytest

from lmbook.cost import training_flops, training_memory
from lmbook.model_size import PARTS, parameter_parts, size_estimate
from lmbook.transformer import KNOWN_MODELS, TransformerConfig, count_flops, count_parameters


def test_gpt2_small_parts_counted_by_hand():
    config = KNOWN_MODELS["GPT-2 small"].config  # V 50,257, T 1,024, C 768, L 12
    parts = parameter_parts(count_parameters(config))
    C, L = 768, 12
    assert parts == {
        "embeddings": 50257 * C + 1024 * C,
        "attention": L * 4 * (C * C + C),
        "feed_forward": L * (2 * C * 4 * C + 4 * C + C),
        "other": L * 4 * C + 2 * C,  # two layer norms per block and the final one; the output layer is tied
    }
    assert sum(parts.values()) == count_parameters(config)["total"] == 124_439_808


@pytest.mark.parametrize("name", ["BERT-base", "BERT-large", "GPT-2 small", "GPT-2 XL"])
def test_parts_add_up_to_the_total(name):
    model = KNOWN_MODELS[name]
    counts = count_parameters(model.config, model.kind)
    parts = parameter_parts(counts)
    assert tuple(parts) == PARTS and sum(parts.values()) == counts["total"]
    assert parts["embeddings"] == counts["total"] - counts["non_embedding"]


def test_an_untied_output_layer_and_the_pooler_are_other():
    untied = TransformerConfig(100, 16, 32, 2, 4, tied_embeddings=False)
    tied = TransformerConfig(100, 16, 32, 2, 4)
    assert parameter_parts(count_parameters(untied))["other"] - parameter_parts(count_parameters(tied))["other"] == (
        100 * 32
    )
    bert = parameter_parts(count_parameters(tied, "bert"))
    assert bert["other"] == 2 * 4 * 32 + 2 * 32 + 32 * 32 + 32  # block norms, embedding norm, pooler
    assert bert["embeddings"] == (100 + 16 + 2) * 32  # tokens, positions, segments


def test_parameter_parts_rejects_something_else():
    with pytest.raises(ValueError, match=r"missing \['attention', 'feed_forward'\]"):
        parameter_parts({"total": 3})


@pytest.mark.parametrize(("name", "tokens_per_parameter"), [("BERT-base", 20), ("GPT-2 XL", 1.7)])
def test_size_estimate_is_the_books_counters(name, tokens_per_parameter):
    model = KNOWN_MODELS[name]
    e = size_estimate(model.config, model.kind, tokens_per_parameter)
    n = count_parameters(model.config, model.kind)["total"]
    assert e.n_params == n and e.counts == count_parameters(model.config, model.kind)
    assert e.weight_bytes == {"fp32": 4.0 * n, "bf16": 2.0 * n}
    assert e.training_bytes == training_memory(n, "mixed", "adam") and e.training_bytes["total"] == 16 * n
    assert e.forward_flops == count_flops(model.config)
    assert e.n_tokens == tokens_per_parameter * n
    assert e.training_flops == training_flops(n, tokens_per_parameter * n) == 6 * n * e.n_tokens
    assert sum(e.shares.values()) == pytest.approx(1.0)
    f = e.forward_flops
    assert e.attention_share == f["attention"] / f["forward_per_token"]


def test_attention_share_grows_with_the_context():
    shares = [size_estimate(TransformerConfig(50257, t, 768, 12, 12)).attention_share for t in (512, 2048, 8192)]
    assert shares[0] < shares[1] < shares[2]


def test_the_bert_sizes_are_base_110m_and_large_340m():
    base, large = (size_estimate(KNOWN_MODELS[n].config, "bert").n_params for n in ("BERT-base", "BERT-large"))
    assert abs(base / 110e6 - 1) < 0.02 and abs(large / 340e6 - 1) < 0.02 and large > 3 * base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "t5"}, "unknown kind 't5'; choose one of 'gpt', 'bert'"),
        ({"tokens_per_parameter": 0}, "tokens_per_parameter must be a positive number, got 0"),
        ({"tokens_per_parameter": float("nan")}, "tokens_per_parameter must be a positive number"),
        ({"tokens_per_parameter": True}, "tokens_per_parameter must be a positive number, got True"),
        ({"tokens_per_parameter": "20"}, "tokens_per_parameter must be a positive number"),
    ],
)
def test_size_estimate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        size_estimate(KNOWN_MODELS["GPT-2 small"].config, **kwargs)
