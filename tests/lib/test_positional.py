"""Tests of lmbook.positional: the sinusoidal formula, learned positions, similarities, and why positions matter."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lmbook.attention import MultiHeadAttention
from lmbook.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    position_similarity,
    sinusoidal_encoding,
)
from lmbook.testing import ShapeError


def loop_encoding(T, C, base=10000.0):
    """The formula of Vaswani et al., one entry at a time."""
    P = np.zeros((T, C))
    for pos in range(T):
        for col in range(C):
            i = col // 2
            angle = pos / base ** (2 * i / C)
            P[pos, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return P


@pytest.mark.parametrize(("T", "C"), [(1, 2), (10, 8), (50, 16), (7, 5)])
def test_sinusoidal_encoding_follows_the_formula(T, C):
    P = sinusoidal_encoding(T, C, dtype=torch.float64)
    assert P.shape == (T, C) and P.dtype == torch.float64
    np.testing.assert_allclose(P.numpy(), loop_encoding(T, C), atol=1e-12)
    assert sinusoidal_encoding(T, C).dtype == torch.float32


def test_sinusoidal_encoding_first_row_and_range():
    P = sinusoidal_encoding(100, 32, dtype=torch.float64)
    assert torch.equal(P[0], torch.tensor([0.0, 1.0] * 16, dtype=torch.float64))  # sin 0, cos 0
    assert P.abs().max() <= 1.0
    # every sin/cos pair lies on the unit circle, so each row has length sqrt(C / 2)
    assert_close(P.norm(dim=1), torch.full((100,), 4.0, dtype=torch.float64))
    with pytest.raises(ValueError):
        sinusoidal_encoding(0, 4)


def test_sinusoidal_dot_product_depends_only_on_the_distance():
    P = sinusoidal_encoding(64, 16, dtype=torch.float64)
    S = position_similarity(P, "dot")
    freq = 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    for k in (0, 1, 5, 20):
        expected = torch.cos(k * freq).sum()  # sin a sin b + cos a cos b = cos(a - b), summed over the pairs
        assert_close(torch.diagonal(S, offset=k), expected.expand(64 - k))
    # a position is most like itself, then like its neighbours (with ripples further away: not monotonic)
    C = position_similarity(P)
    by_distance = [float(torch.diagonal(C, offset=k)[0]) for k in range(64)]
    assert by_distance[0] > by_distance[1] > max(by_distance[2:])


def test_position_similarity():
    torch.manual_seed(0)
    P = torch.randn(6, 4, dtype=torch.float64)
    assert_close(position_similarity(P, "dot"), P @ P.T)
    cos = position_similarity(P)
    assert_close(torch.diagonal(cos), torch.ones(6, dtype=torch.float64))
    assert_close(cos, cos.T)
    assert_close(cos[1, 3], torch.nn.functional.cosine_similarity(P[1], P[3], dim=0))
    with pytest.raises(ValueError, match="kind"):
        position_similarity(P, "euclid")
    with pytest.raises(ShapeError):
        position_similarity(torch.zeros(2, 3, 4))


def test_learned_positions_are_rows_of_a_table():
    torch.manual_seed(0)
    pos = LearnedPositionalEmbedding(8, 4)
    out = pos(5)
    assert torch.equal(out, pos.embedding.weight[:5])
    out.sum().backward()
    grad = pos.embedding.weight.grad
    assert torch.equal(grad[:5], torch.ones(5, 4)) and torch.equal(grad[5:], torch.zeros(3, 4))
    with pytest.raises(ValueError, match="max_len=8"):
        pos(9)


def test_sinusoidal_module_has_nothing_to_train():
    enc = SinusoidalPositionalEncoding(16, 6)
    assert list(enc.parameters()) == [] and enc.state_dict() == {}
    assert torch.equal(enc(10), sinusoidal_encoding(10, 6))
    with pytest.raises(ValueError):
        enc(17)


def test_attention_without_positions_ignores_order():
    """Attention alone is permutation-equivariant; adding positions breaks that, which is the point."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).to(torch.float64)
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert_close(mha(x[:, perm]), mha(x)[:, perm])
    P = sinusoidal_encoding(6, 8, dtype=torch.float64)
    with_positions = mha(x + P)
    permuted = mha(x[:, perm] + P)
    assert not torch.allclose(permuted, with_positions[:, perm])
