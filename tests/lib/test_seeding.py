"""Tests of lmbook.seeding.private_seed: seeded draws inside, the caller's state untouched outside."""

import torch

from lmbook.seeding import private_seed


def test_private_seed_draws_the_seeded_numbers_and_restores_the_state():
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    torch.manual_seed(123)
    with private_seed(7, devices=[torch.device("cpu"), "cpu"]):  # CPU devices are accepted and need no fork
        inside = torch.rand(3)
    assert torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(torch.rand(3), expected_after)  # as if the block had not drawn at all


def test_private_seed_none_draws_from_the_global_state():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with private_seed(None):
        inside = torch.rand(2)
    assert torch.equal(inside, expected)
