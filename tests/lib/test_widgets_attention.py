"""Tests of chapter 7's widgets without a browser: encoding_pictures as a pure function, the
widgets through .update(). Update latency is not asserted here (it depends on the machine's load)."""

import warnings

import numpy as np
import pytest
import torch

from lmbook.gpt import GPT, GPTConfig
from lmbook.positional import position_similarity, sinusoidal_encoding
from lmbook.text import CharTokenizer
from lmbook.widgets import (
    AttentionViewer,
    PositionalEncodingExplorer,
    encoding_pictures,
)
from tests.lib.widget_helpers import execute_with_widget_state, png_size

TEXT = "the cat sat on the mat.\nthe dog sat on the log."
TOKENIZER = CharTokenizer(TEXT)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig(TOKENIZER.vocab_size, max_len=32, d_model=16, n_layers=2, n_heads=4))


# ----- AttentionViewer ---------------------------------------------------------------------------------------


def test_attention_viewer_starts_with_a_picture(model):
    viewer = AttentionViewer(model, TOKENIZER, "the cat sat on the mat", layer=1, head=2)
    assert png_size(viewer.figure_image.image.value)[0] > 300
    assert viewer.values == {"text": "the cat sat on the mat", "layer": 1, "head": 2}
    assert viewer.tokens[:4] == ["t", "h", "e", "\u00b7"]  # a space is shown as a middle dot
    np.testing.assert_array_equal(viewer._image.get_array(), viewer.maps[(1, 2)])
    assert "Layer 1, head 2" in viewer.status.value and "mean distance" in viewer.status.value
    assert list(viewer.controls["head"].options) == [0, 1, 2, 3]
    assert repr(viewer).startswith("AttentionViewer(text='the cat sat")


def test_attention_viewer_update_redraws_the_same_figure(model):
    viewer = AttentionViewer(model, TOKENIZER, "the cat")
    fig, axes, texts = viewer.figure, list(viewer.figure.axes), len(viewer.ax.texts)
    first, renders = viewer.figure_image.image.value, viewer.figure_image.renders
    elapsed = viewer.update(layer=1, head=3)
    assert elapsed >= 0 and viewer.figure_image.renders == renders + 1
    assert viewer.figure is fig and viewer.figure.axes == axes and len(viewer.ax.texts) == texts
    assert viewer.figure_image.image.value != first
    np.testing.assert_array_equal(viewer._image.get_array(), viewer.maps[(1, 3)])
    viewer.update(text="the dog sat on the log")
    assert len(viewer.tokens) == 22 and viewer.maps[(0, 0)].shape == (22, 22)
    visible = [t.get_text() for t in viewer.ax.texts if t.get_visible()]
    assert len(visible) == 2 * 22
    viewer.update(text="the dog")  # shorter again: the extra labels are hidden
    assert sum(t.get_visible() for t in viewer.ax.texts) == 2 * 7


def test_attention_viewer_cuts_long_text_to_max_len(model):
    viewer = AttentionViewer(model, TOKENIZER, TEXT)  # 47 characters, max_len 32
    assert len(viewer.tokens) == 32 and "cut to the first 32 tokens" in viewer.status.value


def test_attention_viewer_controls_redraw_and_report_errors(model):
    viewer = AttentionViewer(model, TOKENIZER, "the cat")
    renders = viewer.figure_image.renders
    viewer.controls["head"].value = 1  # what choosing in a browser does
    assert viewer.figure_image.renders == renders + 1
    before = viewer.figure_image.image.value
    viewer.controls["text"].value = "the cat!"  # "!" is not in the vocabulary
    assert "not in the vocabulary" in viewer.status.value and viewer.figure_image.image.value == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"layer": 2}, "no head 0 in layer 2"), ({"head": 4}, "no head 4"), ({"text": "xyz"}, "vocabulary"),
     ({"text": ""}, "at least one"), ({"colour": "red"}, "unknown setting")],
)  # fmt: skip
def test_attention_viewer_rejects_bad_settings_without_changing_anything(model, kwargs, message):
    viewer = AttentionViewer(model, TOKENIZER, "the cat")
    before, renders = dict(viewer.values), viewer.figure_image.renders
    with pytest.raises(ValueError, match=message):
        viewer.update(**kwargs)
    assert viewer.values == before and viewer.figure_image.renders == renders


def test_attention_viewer_on_a_bert_classifier_with_wordpiece_tokens():
    from lmbook.bert import BertConfig, BertModel
    from lmbook.finetune import BertClassifier
    from lmbook.hub import offline_model_path
    from lmbook.wordpiece import WordPieceTokenizer

    tokenizer = WordPieceTokenizer(offline_model_path() / "vocab.txt")
    bert = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size, dropout=0.0), seed=0)
    viewer = AttentionViewer(BertClassifier(bert, pooling="mean"), tokenizer, "Tokenization is fun!", layer=1, head=3)
    assert viewer.tokens == ["[CLS]", "token", "##ization", "is", "fun", "!", "[SEP]"]
    assert viewer.max_len == bert.config.max_len and "cut" not in viewer.status.value
    weights = viewer.maps[(1, 3)]
    assert weights.shape == (7, 7) and np.allclose(weights.sum(axis=1), 1.0)
    assert np.triu(weights, 1).sum() > 0.1  # no causal mask: BERT's tokens also attend to later ones
    labels = [t for t in viewer.ax.texts if t.get_visible() and t.get_rotation() == 90]
    assert [t.get_text() for t in labels] == viewer.tokens  # the key labels, written downwards
    long_text = " ".join(["word"] * 200)  # 202 tokens, more than the tiny BERT's 128 positions
    viewer.update(text=long_text)
    assert len(viewer.tokens) == 128 and "cut to the first 128 tokens" in viewer.status.value
    viewer.update(text="short again")
    assert "cut" not in viewer.status.value and len(viewer.tokens) == 4


# ----- positional encodings ----------------------------------------------------------------------------------


def test_encoding_pictures_is_the_encoding_and_its_similarity():
    P, S = encoding_pictures(20, 10, "dot")
    np.testing.assert_array_equal(P, sinusoidal_encoding(20, 10, dtype=torch.float64).numpy())
    np.testing.assert_allclose(S, position_similarity(torch.from_numpy(P), "dot").numpy())
    assert encoding_pictures(5, 3)[1].shape == (5, 5)
    with pytest.raises(ValueError):
        encoding_pictures(1000, 8)
    with pytest.raises(ValueError, match="kind"):
        encoding_pictures(8, 8, "l2")


def test_positional_explorer_starts_with_a_picture_and_updates_the_same_figure():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a missing glyph
        explorer = PositionalEncodingExplorer()
    assert png_size(explorer.figure_image.image.value)[0] > 300
    assert explorer.encoding.shape == (64, 64) and explorer.similarity.shape == (64, 64)
    fig, axes, first = explorer.figure, list(explorer.figure.axes), explorer.figure_image.image.value
    elapsed = explorer.update(T=100, C=31, kind="dot")
    assert elapsed >= 0 and explorer.figure is fig and explorer.figure.axes == axes
    assert explorer.encoding.shape == (100, 31) and explorer.figure_image.image.value != first
    assert explorer.ax_sim.get_xlim() == (-0.5, 99.5)
    assert "100 positions, 31 features" in explorer.status.value
    renders = explorer.figure_image.renders
    explorer.controls["C"].value = 16
    assert explorer.figure_image.renders == renders + 1 and explorer.encoding.shape == (100, 16)
    before = dict(explorer.values)
    for bad in ({"T": 1}, {"kind": "l1"}, {"depth": 3}):
        with pytest.raises(ValueError):
            explorer.update(**bad)
    assert explorer.values == before


def test_executed_notebook_stores_the_chapter_7_widget_images(monkeypatch):
    """The images are in the stored widget state, so the HTML book shows them without a kernel."""
    _, _, images = execute_with_widget_state(
        monkeypatch,
        "from lmbook.widgets import PositionalEncodingExplorer\nPositionalEncodingExplorer(T=32)",
        "from lmbook.gpt import GPT, GPTConfig\nfrom lmbook.text import CharTokenizer\n"
        "from lmbook.widgets import AttentionViewer\ntok = CharTokenizer('abc ')\n"
        "AttentionViewer(GPT(GPTConfig(tok.vocab_size, max_len=8, d_model=8, n_heads=2)), tok, 'abc cab')",
    )
    assert len(images) == 2
    for m in images:
        (buffer,) = m["buffers"]
        assert buffer["path"] == ["value"] and len(buffer["data"]) > 10_000
