"""Tests of chapter 10's compression explorer without a browser: its functions against lmbook.quantize and
lmbook.prune, the storage formula against counts made by hand, the numbers and the picture the widget shows
against direct computations, bad settings rejected, and its record grid. Update latency is not asserted here (it
depends on the machine's load)."""

import io
import math

import numpy as np
import PIL.Image
import pytest
import torch

from lmbook.bert import load_pretrained
from lmbook.finetune import BertClassifier
from lmbook.memory import parameter_bytes
from lmbook.prune import magnitude_mask
from lmbook.quantize import fake_quantize, quant_params
from lmbook.sentiment import load_sentiment
from lmbook.widgets.base import FigureImage
from lmbook.widgets.compression import (
    BIT_WIDTHS,
    DEFAULT_LAYER,
    N_SENTENCES,
    CompressionExplorer,
    compress_weight,
    compressed_layers,
    kept_entries,
    layer_errors,
    layer_inputs,
    model_size,
    relative_error,
    snr_db,
    storage_bytes,
)
from lmbook.widgets.recorded import MAX_STATES, check_grid
from tests.lib.widget_helpers import artist_counts, png_size


@pytest.fixture(scope="module")
def minilm():
    model, tokenizer, _ = load_pretrained("minilm")
    return model, tokenizer


@pytest.fixture(scope="module")
def explorer(minilm):
    """One explorer for the tests that leave it as they found it."""
    return CompressionExplorer(*minilm)


def _weight(seed=0, shape=(16, 24)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("axis", [None, 0])
def test_compress_weight_is_magnitude_pruning_then_fake_quantize(scheme, axis):
    w = _weight()
    for bits in (2, 4, 8):
        expected = fake_quantize(w * magnitude_mask(w, 0.5), bits=bits, scheme=scheme, axis=axis)
        assert torch.equal(compress_weight(w, bits, 0.5, scheme, axis), expected)
    # the pruned weights stay exactly zero after quantisation: both schemes store 0 exactly
    compressed = compress_weight(w, 3, 0.5, scheme, axis)
    assert bool((compressed[~magnitude_mask(w, 0.5)] == 0).all())


def test_float_bit_widths_are_float16_and_float32():
    w = _weight()
    assert torch.equal(compress_weight(w, 32), w)
    assert torch.equal(compress_weight(w, 16), w.half().float())
    assert not torch.equal(compress_weight(w, 16), w)
    assert torch.equal(compress_weight(w, 32, 0.25), w * magnitude_mask(w, 0.25))


def test_errors_and_snr():
    w = _weight()
    noisy = w + 0.1 * _weight(1)
    expected = float(torch.linalg.norm((noisy - w).double()) / torch.linalg.norm(w.double()))
    assert relative_error(w, noisy) == pytest.approx(expected, rel=1e-6)
    assert snr_db(w, noisy) == pytest.approx(-20 * math.log10(expected), rel=1e-6)
    assert snr_db(w, w) == math.inf and relative_error(w, w) == 0


def test_layer_errors_are_direct_computations():
    w, b, x = _weight(), _weight(2, (16,)), _weight(3, (40, 24))
    errors = layer_errors(w, b, x, sparsity=0.3, scheme="symmetric", axis=0)
    assert [e.bits for e in errors] == list(BIT_WIDTHS)
    for e in errors:
        c = compress_weight(w, e.bits, 0.3, "symmetric", 0)
        assert e.weight_error == relative_error(w, c) and e.weight_snr_db == snr_db(w, c)
        assert e.output_error == relative_error(x @ w.T + b, x @ c.T + b)
        assert e.zeros == float((c == 0).double().mean()) and e.zeros >= round(0.3 * w.numel()) / w.numel()
    assert errors[-1].weight_error == relative_error(w, w * magnitude_mask(w, 0.3))  # float32: pruning only
    # more bits, less error (integer widths)
    assert all(a.weight_error > b.weight_error for a, b in zip(errors[:6], errors[1:7], strict=True))


def test_storage_bytes_counted_by_hand():
    # a 4 x 8 matrix with 10 entries kept, 4 bits, affine, one scale: 8 bytes of scale and zero point
    assert storage_bytes((4, 8), 10, 4) == 32 * 4 // 8 + 8  # 16 bytes of packed values
    assert storage_bytes((4, 8), 10, 4, storage="bitmask") == 32 // 8 + 5 + 8
    assert storage_bytes((4, 8), 10, 4, storage="CSR") == 5 + 10 * 2 + 5 * 4 + 8
    # one scale per row, symmetric (no zero points): 4 x 4 bytes
    assert storage_bytes((4, 8), 10, 4, "symmetric", 0) == 16 + 16
    assert storage_bytes((4, 8), 10, 4, "affine", 0) == 16 + 32
    # 3 bits pack across byte boundaries, rounded up once per matrix; float formats have no scales
    assert storage_bytes((3, 3), 9, 3) == math.ceil(27 / 8) + 8
    assert storage_bytes((4, 8), 32, 16) == 64 and storage_bytes((4, 8), 32, 32) == 128
    # more than 65,536 columns: 4-byte column indices
    assert storage_bytes((1, 70_000), 100, 32, storage="CSR") == 400 + 400 + 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 9}, "bits must be one of 2, 3, 4, 5, 6, 7, 8, 16, 32; got 9"),
        ({"bits": True}, "bits must be one of"),
        ({"storage": "COO"}, "unknown storage 'COO'"),
        ({"scheme": "asymmetric"}, "unknown scheme 'asymmetric'"),
        ({"axis": 1}, "axis must be None"),
        ({"n_kept": 33}, "n_kept must be between 0 and the 32 entries of a 4 x 8 matrix; got 33"),
    ],
)
def test_storage_bytes_rejects_bad_arguments(kwargs, message):
    args = {"shape": (4, 8), "n_kept": 10, "bits": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        storage_bytes(**args)


def test_kept_entries_are_what_pruning_leaves(minilm):
    model, _ = minilm
    layers = compressed_layers(model)
    assert len(layers) == 36 and all("encoder" in name for name in layers)
    some = {name: layers[name] for name in list(layers)[:3]}
    for sparsity in (0.0, 0.3, 0.5, 0.9):
        counted = {
            name: int((m.weight * magnitude_mask(m.weight, sparsity)).count_nonzero()) for name, m in some.items()
        }
        assert kept_entries(some, sparsity) == counted
    # a weight that already holds zeros: pruning removes them first
    layer = torch.nn.Linear(10, 10)
    with torch.no_grad():
        layer.weight[:3] = 0  # 30 zeros
    for sparsity in (0.1, 0.3, 0.5):
        expected = int((layer.weight * magnitude_mask(layer.weight, sparsity)).count_nonzero())
        assert kept_entries({"x": layer}, sparsity) == {"x": expected}


def test_model_size_adds_up(minilm):
    model, _ = minilm
    layers = compressed_layers(model)
    n = [m.weight.numel() for m in layers.values()]
    exact = model_size(model, 32)
    assert exact.float32 == parameter_bytes(model) == 4 * 22_713_216
    assert exact.total("dense") == exact.float32 and exact.other == exact.float32 - 4 * sum(n)
    int8 = model_size(model, 8, 0.0, "affine", None)
    assert int8.linear["dense"] == sum(n) + 8 * len(n)
    half = model_size(model, 4, 0.5, "symmetric", 0)
    assert half.linear["bitmask"] == sum(k // 8 + (k // 2) * 4 // 8 + 4 * m.out_features
                                         for k, m in zip(n, layers.values(), strict=True))  # fmt: skip
    assert model_size(model, 8, 0.9).smallest == "bitmask" and model_size(model, 8, 0.0).smallest == "dense"
    with pytest.raises(ValueError, match="unknown storage 'COO'"):
        half.total("COO")


def test_the_widget_shows_the_direct_computations(explorer, minilm):
    model, tokenizer = minilm
    w = explorer
    assert w.values == {"bits": 4, "sparsity": 0.0, "scheme": "affine", "granularity": "per tensor",
                        "layer": DEFAULT_LAYER}  # fmt: skip
    assert png_size(w.figure_image.image.value) == (720, 315)
    w.update(bits=3, sparsity=0.5, granularity="per channel")
    try:
        layer = dict(model.named_modules())[DEFAULT_LAYER]
        weight, bias = layer.weight.detach(), layer.bias.detach()
        texts = load_sentiment("val")[0][:N_SENTENCES]
        x = layer_inputs(model, tokenizer, texts, [DEFAULT_LAYER])[DEFAULT_LAYER]
        assert x.shape == (int(tokenizer.batch_encode(texts)["attention_mask"].sum()), 1536)
        c = compress_weight(weight, 3, 0.5, "affine", 0)
        assert w.error.weight_error == pytest.approx(relative_error(weight, c), rel=1e-9)
        assert w.error.output_error == pytest.approx(relative_error(x @ weight.T + bias, x @ c.T + bias), rel=1e-4)
        assert w.size == model_size(model, 3, 0.5, "affine", 0)  # pruning every layer to count
        status = w.status.value
        assert f"weight error <b>{w.error.weight_error:.2%}</b>" in status
        assert f"output error <b>{w.error.output_error:.2%}</b>" in status
        assert f"dense {w.size.total('dense') / 1e6:.1f}" in status and "90.9 MB in float32" in status
        # the histogram is the compressed weight's; the ticks are the grid of the channel of median scale
        low, high = w._window
        assert np.array_equal(w._compressed.get_data().values, torch.histc(c, 120, low, high).numpy())
        scale, zero = quant_params(weight * magnitude_mask(weight, 0.5), 3, "affine", 0)
        row = int(torch.argsort(scale.flatten())[192])
        levels = (np.arange(-4, 4) - int(zero[row])) * float(scale[row])
        ticks = [segment[0][0] for segment in w._levels.get_segments()]
        assert np.allclose(ticks, levels[(levels >= low) & (levels <= high)])
        # the curve's dot is the current bit width's signal-to-noise ratio
        assert w._weight_dot.get_data()[1][0] == pytest.approx(snr_db(weight, c))
        bars = [p.get_width() for p in w._bars_linear.patches]
        assert bars[1:] == pytest.approx([w.size.linear[s] / 1e6 for s in ("dense", "bitmask", "CSR")])
    finally:
        w.update(bits=4, sparsity=0.0, granularity="per tensor")


def test_update_redraws_the_same_figure(minilm):
    w = CompressionExplorer(*minilm, texts=load_sentiment("val")[0][:4])
    fig, first, renders = w.figure, w.figure_image.image.value, w.figure_image.renders
    counts = [artist_counts(ax) for ax in (w.ax_weights, w.ax_error, w.ax_size)]
    w.update(bits=8, scheme="symmetric")
    assert w.figure is fig and w.figure_image.renders == renders + 1
    assert [artist_counts(ax) for ax in (w.ax_weights, w.ax_error, w.ax_size)] == counts
    assert w.figure_image.image.value != first
    w.controls["sparsity"].value = 0.9  # what moving the slider in a browser does
    assert w.figure_image.renders == renders + 2 and w.error.zeros >= 0.9
    w.update(bits=32, sparsity=0.0)
    assert w.error.weight_error == 0 and w.error.output_error == 0 and "float32" in w.status.value
    assert w.size.total("dense") == w.size.float32
    w.update(layer="encoder.blocks.5.attn.W_q")  # another layer: another histogram
    assert "blocks.5.attn.W_q" in w.ax_weights.get_title() and w.inputs[w.values["layer"]].shape[1] == 384


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 1}, "bits must be one of 2, 3, 4, 5, 6, 7, 8, 16, 32; got 1"),
        ({"bits": 12}, "bits must be one of"),
        ({"sparsity": 0.95}, r"sparsity must be one of 0, 0.1, .*, 0.9; got 0.95"),
        ({"sparsity": -0.1}, "sparsity must be one of"),
        ({"sparsity": "half"}, "sparsity must be one of"),
        ({"scheme": "asymmetric"}, "unknown scheme 'asymmetric'"),
        ({"granularity": "per row"}, "unknown granularity 'per row'"),
        ({"layer": "encoder.blocks.9.ffn.fc1"}, "unknown layer 'encoder.blocks.9.ffn.fc1'"),
        ({"temperature": 2.0}, "unknown setting"),
    ],
)
def test_update_rejects_bad_settings_without_changing_anything(explorer, kwargs, message):
    before, renders = dict(explorer.values), explorer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        explorer.update(**kwargs)
    assert explorer.values == before and explorer.figure_image.renders == renders


def test_constructor_checks_its_arguments(minilm):
    model, _ = minilm
    with pytest.raises(ValueError, match="give the model's tokenizer"):
        CompressionExplorer(model)
    with pytest.raises(ValueError, match="bits must be one of"):
        CompressionExplorer(*minilm, bits=10, texts=["a short sentence"])
    with pytest.raises(ValueError, match="texts must be a non-empty list of sentences; got 'one sentence'"):
        CompressionExplorer(*minilm, texts="one sentence")
    with pytest.raises(ValueError, match="texts must be a non-empty list"):
        CompressionExplorer(*minilm, texts=[])


def test_a_classifier_is_explored_by_the_same_layer_names(minilm):
    """Chapter 8's classifier keeps its encoder as ``bert``: the short layer name still finds the layer."""
    classifier = BertClassifier(minilm[0], num_labels=2, pooling="mean")
    w = CompressionExplorer(classifier, minilm[1], texts=["a fine film", "a dull film"], sparsity=0.3)
    assert w.values["layer"] == "bert." + DEFAULT_LAYER and w.values["sparsity"] == 0.3
    assert w.size.float32 == parameter_bytes(classifier)


def test_record_grid_is_valid_and_holds_the_current_values(explorer):
    grid = check_grid(explorer, explorer.record_grid())
    assert grid["bits"] == [2, 3, 4, 8, 16, 32] and grid["sparsity"] == [0.0, 0.5, 0.9]
    assert math.prod(len(v) for v in grid.values()) == 72 <= MAX_STATES
    explorer.update(sparsity=0.1 * 3, scheme="symmetric", bits=6)  # 0.30000000000000004 is the slider's 0.3
    try:
        assert explorer.values["sparsity"] == 0.3
        grid = check_grid(explorer, explorer.record_grid())
        assert grid["sparsity"] == [0.0, 0.3, 0.5, 0.9] and grid["bits"] == [2, 3, 4, 6, 8, 16, 32]
        assert math.prod(len(v) for v in grid.values()) <= MAX_STATES
    finally:
        explorer.update(sparsity=0.0, scheme="affine", bits=4)


def test_recording_gives_every_state_its_own_picture_and_numbers(explorer):
    view = explorer.recorded({"bits": [2, 4], "granularity": ["per tensor", "per channel"]})
    assert list(view.states) == [f"bits per weight = {b}, scales = {g}" for b in (2, 4)
                                 for g in ("per tensor", "per channel")]  # fmt: skip
    assert len({png for png, _ in view.states.values()}) == 4
    assert len({status for _, status in view.states.values()}) == 4
    assert explorer.values["bits"] == 4 and explorer.values["granularity"] == "per tensor"  # put back


def test_a_blitted_picture_is_the_full_drawing(explorer):
    explorer.update(bits=2, sparsity=0.9)
    try:
        blitted = np.asarray(PIL.Image.open(io.BytesIO(explorer.figure_image.image.value)).convert("RGB"), dtype=int)
        full = FigureImage.to_png(explorer.figure_image)
        full = np.asarray(PIL.Image.open(io.BytesIO(full)).convert("RGB"), dtype=int)
        assert blitted.shape == full.shape
        assert (np.abs(blitted - full).max(axis=2) > 40).mean() < 0.002
    finally:
        explorer.update(bits=4, sparsity=0.0)
