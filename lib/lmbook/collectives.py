"""All-reduce from point-to-point messages: the ring algorithm behind data-parallel training.

Introduced in chapter 9 (compute, memory and scale), section 4. After each backward pass of data-parallel
training, every process holds the gradient of its own slice of the batch, and every process needs the sum (or
mean) over all of them: an *all-reduce*. ``torch.distributed.all_reduce`` does it in one call; this module
writes the classic bandwidth-optimal way of doing it with nothing but ``send`` and ``recv`` between neighbours on
a ring of ``P`` processes (Patarasuk and Yuan 2009, *Bandwidth optimal all-reduce algorithms for clusters of
workstations*, J. Parallel Distrib. Comput. 69(2)).

The tensor is cut into ``P`` chunks. Rank ``r`` sends only to rank ``r + 1`` and receives only from ``r - 1``
(modulo ``P``), in two phases of ``P - 1`` steps each (:func:`ring_schedule`):

1. **reduce-scatter**: at each step every rank passes one chunk to the right and adds the chunk arriving from
   the left into its own copy; after ``P - 1`` steps rank ``r`` holds the complete sum of chunk ``r + 1``;
2. **all-gather**: the complete chunks travel once more around the ring, each copied over the stale one.

Each process sends ``2 (P - 1)`` chunks of ``n / P`` numbers, ``2 (P - 1) / P`` times the tensor's bytes
(:func:`ring_all_reduce_bytes`): less than twice the tensor however many processes there are, which is why the
time of a ring all-reduce hardly grows with ``P`` when bandwidth is the limit.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

PHASES = ("reduce-scatter", "all-gather")


def ring_all_reduce_bytes(n_bytes: float, world_size: int) -> float:
    """Bytes each process sends in a ring all-reduce of a tensor of ``n_bytes``: ``2 (P - 1) / P * n_bytes``.

    Exact when ``P`` divides the number of elements; otherwise it is the average over the processes (the chunks
    then differ by one element, and so do the processes' counts).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a whole number >= 1, got {world_size!r}")
    if n_bytes < 0:
        raise ValueError(f"n_bytes must not be negative, got {n_bytes}")
    return 2 * (world_size - 1) / world_size * n_bytes


def ring_schedule(world_size: int) -> list[dict]:
    """The ``2 (P - 1)`` steps of a ring all-reduce: which chunk each rank sends right and which it receives.

    Returns:
        a list of steps, each a dict with ``phase`` (``"reduce-scatter"`` or ``"all-gather"``), ``send`` and
        ``recv`` (lists indexed by rank: the chunk that rank sends to rank ``r + 1`` and the chunk it receives
        from rank ``r - 1``). What rank ``r`` receives is what rank ``r - 1`` sends at the same step.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a whole number >= 1, got {world_size!r}")
    P = world_size
    steps = []
    for s in range(P - 1):  # reduce-scatter: chunk r - s goes right; the partial sum of chunk r - s - 1 arrives
        steps.append(
            {"phase": PHASES[0], "send": [(r - s) % P for r in range(P)], "recv": [(r - s - 1) % P for r in range(P)]}
        )
    for s in range(P - 1):  # all-gather: rank r starts with the finished chunk r + 1 and passes finished chunks on
        steps.append(
            {"phase": PHASES[1], "send": [(r + 1 - s) % P for r in range(P)], "recv": [(r - s) % P for r in range(P)]}
        )
    return steps


def ring_all_reduce(tensor: torch.Tensor) -> int:
    """Sum ``tensor`` over every process of the default group, in place, by the ring algorithm.

    The result is what ``dist.all_reduce(tensor)`` gives, up to the rounding of a different order of additions.
    Every process must call it with a tensor of the same shape and dtype.

    Args:
        tensor: a contiguous tensor (any shape; it is treated as a flat vector of ``n`` numbers, cut into
            ``P`` chunks whose sizes differ by at most one).

    Returns:
        the number of bytes this process sent (see :func:`ring_all_reduce_bytes`).
    """
    if not tensor.is_contiguous():
        raise ValueError("ring_all_reduce needs a contiguous tensor (call .contiguous() first)")
    P, rank = dist.get_world_size(), dist.get_rank()
    flat = tensor.view(-1)
    chunks = torch.tensor_split(flat, P)  # P views of the tensor's memory; sizes n // P or n // P + 1
    right, left = (rank + 1) % P, (rank - 1) % P
    sent = 0
    for step in ring_schedule(P):
        outgoing, incoming = chunks[step["send"][rank]], chunks[step["recv"][rank]]
        # a chunk of size 0 (n < P) is skipped by both sides, since every rank knows every chunk's size
        request = dist.isend(outgoing, dst=right) if outgoing.numel() else None
        if incoming.numel():
            if step["phase"] == "reduce-scatter":
                buffer = torch.empty_like(incoming)
                dist.recv(buffer, src=left)
                incoming.add_(buffer)  # the partial sum from the left plus this rank's own numbers
            else:
                dist.recv(incoming, src=left)  # a finished chunk replaces the stale one
        if request is not None:
            request.wait()  # the send buffer may change at the next step: wait until it has left
            sent += outgoing.numel() * outgoing.element_size()
    return sent


def check_ring_all_reduce(sizes=(1, 2, 5, 1000, 1001), dtype: str = "float64", seed: int = 0) -> list[dict]:
    """Worker: the ring all-reduce against ``dist.all_reduce`` on random tensors of several sizes.

    Each rank draws its own tensor (seeded by ``seed`` and its rank; normal numbers for a floating ``dtype``,
    integers from -100 to 99 for ``"int64"``) for each number of elements in ``sizes``; the same tensor is
    reduced both ways.

    Returns:
        one dict per size: ``n``, ``max_abs_diff`` (largest difference between the two results on this rank),
        ``bytes_sent`` (counted by :func:`ring_all_reduce`) and ``formula`` (:func:`ring_all_reduce_bytes`).
    """
    from lmbook.launch import worker_device

    dt = getattr(torch, dtype)
    device = worker_device()
    rank, P = dist.get_rank(), dist.get_world_size()
    rows = []
    for n in sizes:
        generator = torch.Generator().manual_seed(seed * 1000 + rank)
        if dt.is_floating_point:
            x = torch.randn(n, generator=generator, dtype=torch.float64).to(dt).to(device)
        else:  # integers: both ways must agree exactly, whatever the order of the additions
            x = torch.randint(-100, 100, (n,), generator=generator).to(dt).to(device)
        ours, theirs = x.clone(), x.clone()
        sent = ring_all_reduce(ours)
        dist.all_reduce(theirs)
        diff = (ours - theirs).abs().max().item() if n else 0.0
        rows.append({"n": n, "max_abs_diff": float(diff), "bytes_sent": sent,
                     "formula": ring_all_reduce_bytes(n * x.element_size(), P)})  # fmt: skip
    return rows


def plot_ring_schedule(world_size: int = 3, ax=None):
    """Draw :func:`ring_schedule` as a grid: one row per rank, one column per step, each cell naming the chunk
    that rank sends right (reduce-scatter in one colour, all-gather in another). Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    steps = ring_schedule(world_size)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(steps) + 2.2, 0.6 * world_size + 1.4), layout="constrained")
    colours = {PHASES[0]: "#9ecae1", PHASES[1]: "#fdae6b"}
    for j, step in enumerate(steps):
        for r in range(world_size):
            ax.add_patch(_cell(j, r, colours[step["phase"]]))
            ax.text(j + 0.5, r + 0.5, f"{step['send'][r]}", ha="center", va="center", fontsize=11)
    ax.set_xlim(0, len(steps))
    ax.set_ylim(world_size, 0)
    ax.set_xticks([j + 0.5 for j in range(len(steps))], [str(j + 1) for j in range(len(steps))])
    ax.set_yticks([r + 0.5 for r in range(world_size)], [f"rank {r}" for r in range(world_size)])
    ax.set_xlabel("step (the number in a cell: the chunk that rank sends to the next rank)")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.legend(handles=[Patch(color=c, label=p) for p, c in colours.items()], loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)  # fmt: skip
    return ax


def _cell(x, y, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.04, y + 0.06), 0.92, 0.88, facecolor=colour, edgecolor="white")
