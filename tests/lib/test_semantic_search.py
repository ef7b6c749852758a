"""lmbook.semantic_search: cosine top-k against torch (values, order, gradients, float64), the glossary parser on
the real file and on its shipped sample, and the top-k accuracy."""

import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmbook.semantic_search import GlossaryEntry, cosine_top_k, entry_text, glossary_entries, top_k_accuracy

GLOSSARY = pathlib.Path(__file__).resolve().parents[2] / "chapters" / "appendix" / "glossary.md"


def _reference(queries, keys, k):
    cos = F.cosine_similarity(queries[:, None, :], keys[None, :, :], dim=-1)  # (Q, N)
    return torch.topk(cos, k, dim=1)


def test_cosine_top_k_matches_torch_values_and_gradients():
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(7, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(30, 16, generator=gen, dtype=torch.float64) * torch.rand(
        30, 1, generator=gen, dtype=torch.float64
    )
    scores, indices = cosine_top_k(queries, keys, k=5)
    ref = _reference(queries, keys, 5)
    assert scores.shape == indices.shape == (7, 5)
    assert torch.equal(indices, ref.indices)
    torch.testing.assert_close(scores, ref.values)
    (g_ours,) = torch.autograd.grad(scores.sum(), queries)
    (g_ref,) = torch.autograd.grad(ref.values.sum(), queries)
    torch.testing.assert_close(g_ours, g_ref)


def test_cosine_top_k_ignores_length_and_accepts_arrays():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    scores, indices = cosine_top_k(np.array([[10.0, 0.1]], dtype=np.float32), keys * 100, k=3)
    assert indices.tolist() == [[0, 2, 1]]
    assert scores[0, 0] == pytest.approx(10 / np.hypot(10, 0.1))
    _, ties = cosine_top_k(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), k=2)
    assert ties.tolist() == [[0, 1]]  # equal cosines: the lower index first


def test_cosine_top_k_errors():
    with pytest.raises(ValueError, match="C"):
        cosine_top_k(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match="between 1 and the number of keys N=4"):
        cosine_top_k(torch.ones(2, 3), torch.ones(4, 3), k=5)
    with pytest.raises(ValueError, match="keys row 1 is the zero vector"):
        cosine_top_k(torch.ones(2, 3), torch.tensor([[1.0, 0, 0], [0, 0, 0]]), k=1)


def test_glossary_entries_reads_the_book_glossary_and_its_sample(capsys):
    entries = glossary_entries(GLOSSARY)
    assert len(entries) > 200 and all(e.term and e.meaning for e in entries)
    by_term = {e.term: e for e in entries}
    assert "|w|" in by_term["magnitude pruning"].meaning  # a '|' inside the meaning is kept
    assert by_term["dropout"].chapter and by_term["dropout"].chinese
    sample = glossary_entries(GLOSSARY.with_name("absent.md"))
    assert "absent.md not found" in capsys.readouterr().out
    assert 30 <= len(sample) < len(entries)
    for entry in sample:  # the sample holds glossary terms (a renamed term would break chapter 11's queries on Colab)
        assert entry.term in by_term and by_term[entry.term].chapter == entry.chapter


def test_glossary_entries_rejects_a_file_without_a_table(tmp_path):
    path = tmp_path / "g.md"
    path.write_text("# nothing here\n")
    with pytest.raises(ValueError, match="no glossary table rows"):
        glossary_entries(path)


def test_entry_text_and_top_k_accuracy():
    assert entry_text(GlossaryEntry("logit", "", "2", "the score $z$ before the `softmax`")) == (
        "logit: the score z before the softmax"
    )
    cited = GlossaryEntry("BERT", "", "8", "an encoder {cite:p}`devlin2019bert`: see {doc}`the primer <probability>`")
    assert entry_text(cited) == "BERT: an encoder: see the primer"
    ranking = torch.tensor([[3, 1, 2], [0, 2, 1], [2, 0, 1]])
    expected = [{1}, {0, 2}, {1}]
    assert top_k_accuracy(ranking, expected, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(ranking, expected, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(ranking, expected, 3) == 1.0
    with pytest.raises(ValueError, match="k must be between 1"):
        top_k_accuracy(ranking, expected, 4)
