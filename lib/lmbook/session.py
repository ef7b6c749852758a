"""One explicit set-up call at the top of a notebook: CPU threads and seeds.

Introduced in chapter 2 and called in the import cell of every chapter notebook that trains or times a model::

    import lmbook

    lmbook.setup(seed=0, threads=1)

Importing :mod:`lmbook` changes nothing (no seeding, no threads); this call does, visibly, in one place.
"""

from __future__ import annotations


def setup(seed: int | None = 0, threads: int | None = 1) -> None:
    """Fix the number of CPU threads torch uses and seed the global random generators.

    Args:
        seed: seeds torch's global generator (CPU and every GPU), numpy's legacy global one (``np.random``) and
            Python's ``random``, so that cells drawing from them give the same numbers in every run. The book's
            own functions take a ``seed`` or a ``generator`` of their own and do not depend on it. None: no
            seeding.
        threads: CPU threads for torch; None leaves torch's choice (one per core). One is the book's default:
            its models are small, so a second thread saves little, and on a shared machine (Binder, Colab, a
            busy CI runner) threads that wait for each other at every small operation can make a cell many
            times slower.
    """
    import random

    import numpy as np
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1 (or None for torch's choice), got {threads}")
        torch.set_num_threads(int(threads))
    if seed is not None:
        torch.manual_seed(seed)  # seeds the CPU and all GPUs
        np.random.seed(seed)
        random.seed(seed)
