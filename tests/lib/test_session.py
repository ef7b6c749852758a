"""Tests of lmbook.setup: the one explicit set-up call, and an import of lmbook that changes nothing."""

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import lmbook


def test_setup_sets_threads_and_seeds_every_global_generator():
    before = torch.get_num_threads()
    try:
        lmbook.setup(seed=3, threads=1)
        assert torch.get_num_threads() == 1
        first = (torch.rand(3), np.random.rand(3), random.random())
        lmbook.setup(seed=3, threads=None)  # threads=None leaves them alone
        assert torch.get_num_threads() == 1
        second = (torch.rand(3), np.random.rand(3), random.random())
        assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]
        lmbook.setup(seed=4)
        assert not torch.equal(torch.rand(3), first[0])
        with pytest.raises(ValueError, match="threads"):
            lmbook.setup(threads=0)
    finally:
        torch.set_num_threads(before)


def test_importing_lmbook_seeds_nothing_and_leaves_threads_alone():
    code = (
        "import torch; threads = torch.get_num_threads(); state = torch.random.get_rng_state()\n"
        "import lmbook\n"
        "assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    light = "import sys, lmbook; assert 'torch' not in sys.modules, 'import lmbook imported torch'"
    subprocess.run([sys.executable, "-c", light], check=True)
