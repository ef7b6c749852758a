"""Distributed training pitfalls, each as a worker function that shows the mistake next to its fix.

Introduced in chapter 9, Compute, memory and scale (section 7). Each ``*_worker`` function runs in every process
after ``torch.distributed.init_process_group``, started by ``lmbook.launch.run_workers``, e.g.
``run_workers("lmbook.distributed_pitfalls:sampled_indices", n_examples=64)``; it returns plain numbers that
the notebook compares. The helpers without ``dist`` calls (:func:`global_batch_report`,
:func:`drifting_validation_set`) run in one process.

- :func:`sampled_indices`: which examples each process reads, with and without a ``DistributedSampler``.
- :func:`sharded_metrics`: a metric taken on rank 0 only, or averaged over processes with unequal shards,
  against the one weighted by the number of examples.
- :func:`accumulated_gradients`: gradient accumulation under ``DistributedDataParallel`` done right, and with
  the loss scaled twice (by ``accum_steps`` or by ``world_size``), against the gradient of the global batch.

The first pitfall of the section, a learning rate not adjusted with the global batch, needs only one process
(a global batch is one large batch, section 4), so it has no worker here.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lmbook.training import torch_mlp

# ----- the same data in every process ----------------------------------------------------------------------


def sampled_indices(n_examples: int = 64, batch_size: int = 8, seed: int = 0) -> dict:
    """Worker: the example indices this process reads in one epoch, batch by batch, without and with a sampler.

    Every process builds the same shuffled ``DataLoader`` over ``n_examples`` examples with the same seed (as a
    script that seeds everything the same way does). Without a sampler each process reads the whole data set
    in the same order; with ``DistributedSampler(num_replicas=world_size, rank=rank)`` each reads its own
    ``1 / world_size`` of it.

    Returns:
        ``{"no_sampler": batches, "distributed_sampler": batches}``, each a list of batches of example indices.
    """
    dataset = TensorDataset(torch.arange(n_examples))
    # WRONG in a distributed run: the same shuffle in every process
    same = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    sampler = DistributedSampler(dataset, num_replicas=dist.get_world_size(), rank=dist.get_rank(), seed=seed)
    sampler.set_epoch(0)  # call it every epoch, or every epoch repeats the first one's order
    split = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    return {
        "no_sampler": [batch.tolist() for (batch,) in same],
        "distributed_sampler": [batch.tolist() for (batch,) in split],
    }


def global_batch_report(per_rank: list[list[list[int]]], n_examples: int) -> dict:
    """What the processes read together, from :func:`sampled_indices`' results in rank order.

    A step's global batch is batch ``i`` of every process. An epoch of the global batch is
    ``n_examples / global_batch`` steps (rounded up).

    Returns:
        a dict: ``global_batch`` (examples per step), ``steps_per_epoch`` (steps in one epoch of the global
        batch), ``duplicates_first_step`` (examples of the first global batch that another process also reads),
        ``distinct_in_epoch`` (different examples read in ``steps_per_epoch`` steps) and ``coverage`` (that over
        ``n_examples``).
    """
    world_size = len(per_rank)
    if world_size < 1 or any(len(batches) == 0 for batches in per_rank):
        raise ValueError("per_rank must hold at least one process with at least one batch")
    global_batch = sum(len(batches[0]) for batches in per_rank)
    steps_per_epoch = -(-n_examples // global_batch)
    first = [i for batches in per_rank for i in batches[0]]
    seen = {i for batches in per_rank for batch in batches[:steps_per_epoch] for i in batch}
    return {
        "global_batch": global_batch,
        "steps_per_epoch": steps_per_epoch,
        "duplicates_first_step": len(first) - len(set(first)),
        "distinct_in_epoch": len(seen),
        "coverage": len(seen) / n_examples,
    }


# ----- a metric on one rank ------------------------------------------------------------------------------


def drifting_validation_set(n_examples: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A validation set stored in the order it was collected, easy at first and harder later.

    Labels ``y`` are 0 or 1; the one feature is ``x = (2y - 1) * mu + noise`` with a standard normal noise and a
    class separation ``mu`` that falls from 2 to 0.2 along the file, so a classifier's accuracy on the first
    examples is far higher than on the last. Returns ``x`` of shape ``(N,)`` and ``y`` of shape ``(N,)``, float64.
    """
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n_examples,), generator=generator).double()
    mu = torch.linspace(2.0, 0.2, n_examples, dtype=torch.float64)
    x = (2 * y - 1) * mu + torch.randn(n_examples, dtype=torch.float64, generator=generator)
    return x, y


def _metrics(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Summed loss and number correct of the fixed classifier ``logit = 2x``."""
    logits = 2.0 * x
    loss_sum = float(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
    return loss_sum, float(((logits > 0).double() == y).sum())


def sharded_metrics(shard_sizes: tuple[int, ...] = (300, 700), seed: int = 0) -> dict:
    """Worker: validation accuracy and loss of a fixed classifier, with each process evaluating its own shard.

    Process ``r`` evaluates the next ``shard_sizes[r]`` examples of :func:`drifting_validation_set` (shards of
    different sizes, as when each process reads its own files). Three ways to report the result:

    - ``rank0``: rank 0's own numbers (what a script that logs ``if rank == 0`` prints);
    - ``mean_of_means``: each process' mean all-reduced and divided by ``world_size``;
    - ``weighted``: the sums (loss, correct) and the counts all-reduced, then divided: the mean over all examples.

    Returns:
        a dict with ``rank``, ``n_local`` and, for each of the three and for ``single`` (one process over the
        whole set, the reference), ``{"accuracy": ..., "loss": ...}``.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if len(shard_sizes) != world_size:
        raise ValueError(f"shard_sizes needs one size per process: {world_size} sizes, got {len(shard_sizes)}")
    x, y = drifting_validation_set(sum(shard_sizes), seed)
    start = sum(shard_sizes[:rank])
    n_local = shard_sizes[rank]
    loss_sum, correct = _metrics(x[start : start + n_local], y[start : start + n_local])

    local = {"accuracy": correct / n_local, "loss": loss_sum / n_local}
    means = torch.tensor([local["accuracy"], local["loss"]], dtype=torch.float64)
    dist.all_reduce(means)  # WRONG with unequal shards: every process' mean counts the same
    sums = torch.tensor([correct, loss_sum, n_local], dtype=torch.float64)
    dist.all_reduce(sums)  # right: add up what was counted, then divide once
    full_loss, full_correct = _metrics(x, y)
    return {
        "rank": rank,
        "n_local": n_local,
        "rank0": local,  # each process returns its own; the report is rank 0's
        "mean_of_means": {"accuracy": float(means[0]) / world_size, "loss": float(means[1]) / world_size},
        "weighted": {"accuracy": float(sums[0] / sums[2]), "loss": float(sums[1] / sums[2])},
        "single": {"accuracy": full_correct / len(y), "loss": full_loss / len(y)},
    }


# ----- the loss scaled twice -----------------------------------------------------------------------------

ACCUMULATION_VARIANTS = ("right", "divided_by_k_again", "divided_by_world_size_again")
"""The ways :func:`accumulated_gradients` scales the loss: once (right), or a second time by ``k`` or by ``P``."""


def accumulated_gradients(accum_steps: int = 4, batch_size: int = 8, d_in: int = 8, seed: int = 0) -> dict:
    """Worker: one step's gradient under ``DistributedDataParallel`` with gradient accumulation, and two mistakes.

    The global batch, ``batch_size * world_size * accum_steps`` examples of a seeded regression problem, is the
    same in every process; process ``r`` reads its own ``accum_steps`` micro-batches of ``batch_size``. The
    reference is the gradient of the mean loss over the whole global batch in one process, without DDP. The
    DDP step divides every micro-batch's mean loss by ``k = accum_steps`` (``no_sync`` on all but the last
    micro-batch, so DDP averages over processes once); its gradient is then reported three ways:

    - ``"right"``: nothing more; the result equals the reference;
    - ``"divided_by_k_again"``: divides the accumulated gradient by ``k`` again, as if the division by ``k`` in
      the loss had not counted;
    - ``"divided_by_world_size_again"``: divides DDP's gradient by ``world_size``, as if DDP summed instead of
      averaging.

    Returns:
        a dict: ``rank``, ``world_size``, ``accum_steps``, ``global_batch`` and for each variant
        ``{"ratio": |reference| / |gradient|, "max_error": largest absolute difference from the reference}``.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    global_batch = batch_size * world_size * accum_steps
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(global_batch, d_in, dtype=torch.float64, generator=generator)  # (global_batch, d_in)
    y = x @ torch.randn(d_in, 1, dtype=torch.float64, generator=generator) + 0.1  # (global_batch, 1)

    reference_model = torch_mlp((d_in, 16, 1), activation="tanh", seed=seed)
    F.mse_loss(reference_model(x), y).backward()  # the mean over the whole global batch
    reference = torch.cat([p.grad.flatten() for p in reference_model.parameters()])

    mine = torch.arange(global_batch).view(world_size, accum_steps, batch_size)[rank]  # (k, B): my micro-batches
    model = DistributedDataParallel(torch_mlp((d_in, 16, 1), activation="tanh", seed=seed))
    for step, rows in enumerate(mine):
        loss = F.mse_loss(model(x[rows]), y[rows]) / accum_steps  # the one division the loss needs
        if step < accum_steps - 1:
            with model.no_sync():  # accumulate locally; all-reduce only with the last micro-batch
                loss.backward()
        else:
            loss.backward()  # DDP averages the accumulated gradients over the processes here
    gradient = torch.cat([p.grad.flatten() for p in model.parameters()])
    variants = {
        "right": gradient,
        "divided_by_k_again": gradient / accum_steps,  # WRONG: the loss was already divided by k
        "divided_by_world_size_again": gradient / world_size,  # WRONG: DDP already averaged over the processes
    }
    results = {
        variant: {
            "ratio": float(reference.norm() / g.norm()),
            "max_error": float((g - reference).abs().max()),
        }
        for variant, g in variants.items()
    }
    return {"rank": rank, "world_size": world_size, "accum_steps": accum_steps, "global_batch": global_batch, **results}
