"""Data-parallel training of the book's GPT: DistributedDataParallel, sharded (FSDP2), and one process.

Introduced in chapter 9 (compute, memory and scale), section 4. :func:`train_data_parallel` is a worker for
:func:`lmbook.launch.run_workers`: every process builds the same model from the same seed, reads its own share of
each global batch through a ``DistributedSampler``, and either

- ``strategy="ddp"``: keeps a full copy of the model and averages the gradients after each backward pass
  (``torch.nn.parallel.DistributedDataParallel``, an all-reduce of the gradients, overlapped with the backward
  pass bucket by bucket); or
- ``strategy="fsdp"``: keeps only its ``1 / P`` shard of every parameter, of its gradient and of Adam's m and v
  (``torch.distributed.fsdp.fully_shard``, FSDP2: ZeRO stage 3 of Rajbhandari et al. 2020, *ZeRO: Memory
  Optimizations Toward Training Trillion Parameter Models*, arXiv:1910.02054), gathering a block's full weights
  just before it is used and reduce-scattering its gradients after; or
- ``strategy="single"``: trains alone, without any process group, on the whole global batch: the reference
  that both must equal.

The same function runs on a laptop's CPU (gloo) and on a GPU cluster (NCCL, one GPU per process): where it
computes is :func:`lmbook.launch.worker_device`'s one rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lmbook.gpt import GPT, GPTConfig
from lmbook.language_model import next_token_loss
from lmbook.loop import make_optimizer, optimizer_step
from lmbook.testing import check_choice, check_shape
from lmbook.text import CharTokenizer, book_corpus

STRATEGIES = ("single", "ddp", "fsdp")
DTYPES = ("float32", "float64")


def token_windows(tokens: torch.Tensor, seq_len: int, n_windows: int) -> TensorDataset:
    """The first ``n_windows`` non-overlapping windows of ``tokens`` as a data set of ``(x, y)`` pairs.

    Window ``i`` is ``tokens[i (T + 1) : (i + 1) (T + 1)]``; ``x`` is its first ``T`` tokens and ``y`` its last
    ``T`` (the next-token targets). Unlike :func:`lmbook.text.get_batch`'s random windows, a fixed data set can be
    split between processes by a ``DistributedSampler``.
    """
    check_shape(tokens, ("N",), "tokens")
    need = n_windows * (seq_len + 1)
    if n_windows < 1 or len(tokens) < need:
        raise ValueError(f"{n_windows} windows of {seq_len} + 1 tokens need {need} tokens, got {len(tokens)}")
    windows = tokens[:need].view(n_windows, seq_len + 1)  # (n_windows, T + 1)
    return TensorDataset(windows[:, :-1], windows[:, 1:])  # x, y: (n_windows, T) each


@dataclass(frozen=True)
class DataParallelConfig:
    """One data-parallel run.

    Attributes:
        steps: optimiser steps. global_batch: windows per step, over all processes together (each process
            reads ``global_batch / world_size``). seq_len: tokens per window (at most the model's ``max_len``).
        n_windows: the data set's size (windows of the book corpus); it must hold ``steps * global_batch``.
        lr: AdamW's learning rate. seed: the model's initial weights and the sampler's shuffle.
        dtype: ``"float64"`` (for proving two runs equal) or ``"float32"``. size: ``"cpu"`` or ``"gpu"``, the
            :class:`lmbook.gpt.GPTConfig` preset.
    """

    steps: int = 4
    global_batch: int = 8
    seq_len: int = 32
    n_windows: int = 256
    lr: float = 3e-3
    seed: int = 0
    dtype: str = "float64"
    size: str = "cpu"

    def __post_init__(self) -> None:
        check_choice(self.dtype, DTYPES, "dtype")
        check_choice(self.size, ("cpu", "gpu"), "size")
        if self.steps < 1 or self.global_batch < 1:
            raise ValueError(f"steps and global_batch must be >= 1, got {self.steps} and {self.global_batch}")
        if self.steps * self.global_batch > self.n_windows:
            raise ValueError(
                f"steps * global_batch = {self.steps * self.global_batch} windows do not fit in "
                f"n_windows={self.n_windows} (one pass over the data)"
            )


def local_bytes(tensors) -> int:
    """Bytes of the tensors that live in this process: a sharded ``DTensor`` counts only its local shard."""
    total = 0
    for t in tensors:
        if t is None:
            continue
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def local_training_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of training state this process holds: ``weights``, ``gradients`` and ``optimizer`` (Adam's m and v).

    The keys of :func:`lmbook.memory.training_state_bytes`, which measures an unsharded model; here a sharded
    parameter, gradient or state counts only the shard that lives in this process.
    """
    params = list(model.parameters())
    states = [s[key] for s in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq") if key in s]
    return {
        "weights": local_bytes(params),
        "gradients": local_bytes(p.grad for p in params),
        "optimizer": local_bytes(states),
    }


def _full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter, whole and on the CPU (a sharded one is gathered from all processes first)."""
    return {
        name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().cpu().clone()
        for name, p in model.named_parameters()
    }


def train_data_parallel(strategy: str = "ddp", config: DataParallelConfig | None = None) -> dict:
    """Worker (or, with ``strategy="single"``, a plain function): train the GPT and report the run.

    Args:
        strategy: ``"ddp"``, ``"fsdp"`` (both need a process group: start them with
            :func:`lmbook.launch.run_workers`) or ``"single"`` (one process, no process group).
        config: the run (:class:`DataParallelConfig`; its defaults when None).

    Returns:
        a dict: ``strategy``, ``world_size``, ``rank``, ``backend`` (None alone), ``losses`` (the loss of each
        global batch, averaged over the processes), ``step_seconds`` (wall time of each step on this process),
        ``memory`` (this process's :func:`local_training_bytes` after the last step) and ``weights`` (the final
        parameters, whole, on the CPU).
    """
    from lmbook.launch import worker_device

    check_choice(strategy, STRATEGIES, "strategy")
    config = config or DataParallelConfig()
    distributed = strategy != "single"
    if distributed and not dist.is_initialized():
        raise RuntimeError(f"strategy={strategy!r} needs a process group: start it with lmbook.launch.run_workers")
    world_size, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    if config.global_batch % world_size:
        raise ValueError(f"global_batch={config.global_batch} must be a multiple of world_size={world_size}")
    device = worker_device() if distributed else torch.device("cpu")

    tokenizer = CharTokenizer(book_corpus())
    tokens = torch.tensor(tokenizer.encode(book_corpus()[: config.n_windows * (config.seq_len + 1)]))
    dataset = token_windows(tokens, config.seq_len, config.n_windows)
    # every process draws the same shuffle (the same seed) and reads every world_size-th window of it
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed)
    sampler.set_epoch(0)
    loader = DataLoader(dataset, batch_size=config.global_batch // world_size, sampler=sampler, drop_last=True)

    preset = GPTConfig.cpu if config.size == "cpu" else GPTConfig.gpu
    model = GPT(preset(tokenizer.vocab_size, dropout=0.0), seed=config.seed).to(getattr(torch, config.dtype))
    model = model.to(device)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    elif strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # one unit per block: only one block's full weights exist at a time
            fully_shard(block)
        trained = fully_shard(model)  # the rest: embeddings, final layer norm
    else:
        trained = model
    optimizer = make_optimizer(model, "adamw", lr=config.lr, weight_decay=0.1)

    losses, step_seconds = [], []
    for _, (x, y) in zip(range(config.steps), loader, strict=False):
        start = time.perf_counter()
        loss = next_token_loss(trained, x.to(device), y.to(device))
        optimizer_step(loss, model, optimizer)
        step_seconds.append(time.perf_counter() - start)
        loss = loss.detach()
        if distributed:  # every process has the same number of windows: the global loss is the mean
            dist.all_reduce(loss)
            loss /= world_size
        losses.append(float(loss))
    return {
        "strategy": strategy,
        "world_size": world_size,
        "rank": rank,
        "backend": dist.get_backend() if distributed else None,
        "losses": losses,
        "step_seconds": step_seconds,
        "memory": local_training_bytes(model, optimizer),
        "weights": _full_weights(model),
    }


def compare_strategies(strategies=("ddp", "fsdp"), config: DataParallelConfig | None = None) -> dict:
    """Worker: :func:`train_data_parallel` once per strategy in the same processes (one launch for several)."""
    return {strategy: train_data_parallel(strategy, config) for strategy in strategies}


def max_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two runs' final weights (the ``weights`` of their results)."""
    if a.keys() != b.keys():
        raise ValueError(f"the runs have different parameters: {sorted(a.keys() ^ b.keys())}")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
