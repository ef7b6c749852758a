"""Tests of lmbook.sampling: temperature, top-k and greedy draws, and that GPT.generate's draws did not change."""

import pytest
import torch

from lmbook.gpt import GPT, GPTConfig
from lmbook.sampling import check_sampling, sample_next
from lmbook.testing import ShapeError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gpt_generate_before(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """GPT.generate as chapter 7 first wrote it (before lmbook.sampling): the reference for its draws."""
    model.eval()
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.config.max_len :])[:, -1, :].float()
        if temperature == 0 or top_k == 1:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, None), (0.7, 5), (1.5, 3), (0.0, None), (1.0, 1)])
def test_gpt_generate_draws_what_it_drew_before(temperature, top_k):
    model = GPT(GPTConfig(vocab_size=13, max_len=8, d_model=16, n_layers=1, n_heads=2), seed=4)
    start = torch.tensor([[1, 2, 3], [4, 5, 6]])
    got = model.generate(start, 20, temperature, top_k, generator=torch.Generator().manual_seed(9))
    want = _gpt_generate_before(model, start, 20, temperature, top_k, generator=torch.Generator().manual_seed(9))
    assert torch.equal(got, want)


def test_temperature_zero_and_top_k_one_are_greedy():
    logits = torch.tensor([[0.1, 3.0, -2.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, temperature=0).tolist() == [[1], [0]]
    assert sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(0)).tolist() == [[1], [0]]


def test_top_k_never_draws_outside_the_k_largest():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]).repeat(500, 1)
    drawn = sample_next(logits, temperature=5.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {3, 4}
    everything = sample_next(logits, temperature=5.0, generator=torch.Generator().manual_seed(0))
    assert set(everything.flatten().tolist()) == {0, 1, 2, 3, 4}


def test_frequencies_follow_the_tempered_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    n = 20000
    for temperature in (0.5, 2.0):
        drawn = sample_next(logits.repeat(n, 1), temperature, generator=torch.Generator().manual_seed(1))
        freq = torch.bincount(drawn.flatten(), minlength=3).double() / n
        torch.testing.assert_close(freq, torch.softmax(logits[0].double() / temperature, 0), atol=0.015, rtol=0)


def test_errors():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        check_sampling(-0.1, None)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        check_sampling(1.0, 0)
    with pytest.raises(ShapeError, match="logits"):
        sample_next(torch.zeros(5))
