"""Model parallelism: a Transformer MLP split across processes, and pipeline schedules with their bubble.

Introduced in chapter 9, Compute, memory and scale. Data parallelism copies the whole model into every process;
model parallelism splits the model itself, so that a model too large for one device fits on several.

**Tensor parallelism** splits each weight matrix. The feed-forward network ``fc2(GELU(fc1(x)))`` is split the way
Shoeybi et al. 2019 (*Megatron-LM: Training Multi-Billion Parameter Language Models Using Model Parallelism*,
arXiv:1909.08053) split it: ``fc1`` by its output features (:class:`ColumnParallelLinear`: each process computes
``d_ff / P`` of the hidden units, and GELU acts on each unit alone, so it runs locally), ``fc2`` by its input
features (:class:`RowParallelLinear`: each process multiplies its own hidden units by its own rows and gets a
partial sum of the whole output). One all-reduce adds the partial sums in the forward pass; one all-reduce adds
the partial gradients of the input in the backward pass. :class:`TensorParallelFeedForward` puts the two together;
:class:`TensorParallelAttention` splits attention the same way, by whole heads; :func:`tensor_parallel_check`
(run in every process by ``lmbook.launch.run_workers``) compares both with the unsplit layers in values and
gradients.

**Pipeline parallelism** splits the layers into ``n_stages`` consecutive stages and the batch into ``n_micro``
micro-batches. :func:`pipeline_schedule` computes who does what when (GPipe's all-forward-then-all-backward of
Huang et al. 2019, *GPipe: Efficient Training of Giant Neural Networks using Pipeline Parallelism*,
arXiv:1811.06965, and the one-forward-one-backward schedule of Narayanan et al. 2021, *Efficient Large-Scale
Language Model Training on GPU Clusters Using Megatron-LM*, arXiv:2104.04473); :func:`schedule_bubble` measures
the idle share of such a table and :func:`bubble_fraction` is its formula, ``(p - 1) / (m + p - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lmbook.attention import MultiHeadAttention, causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from lmbook.testing import check_choice, check_shape
from lmbook.transformer import FeedForward

# ----- tensor parallelism ----------------------------------------------------------------------------------


class CommunicationLog:
    """A record of the all-reduces a tensor-parallel layer makes: ``(phase, number of elements)`` per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def add(self, phase: str, numel: int) -> None:
        self.calls.append((phase, numel))

    def count(self, phase: str) -> int:
        """Number of all-reduces in ``phase`` (``"forward"`` or ``"backward"``)."""
        return sum(1 for p, _ in self.calls if p == phase)

    def numel(self, phase: str) -> int:
        """Elements all-reduced in ``phase``."""
        return sum(n for p, n in self.calls if p == phase)


class _CopyToTensorParallel(torch.autograd.Function):
    """Megatron's ``f``: the identity forward; backward, the partial input gradients of all processes summed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, log: CommunicationLog | None) -> torch.Tensor:
        ctx.log = log
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # each process only knows the input gradient through its own d_ff / P units
        if ctx.log is not None:
            ctx.log.add("backward", grad.numel())
        return grad, None


class _ReduceFromTensorParallel(torch.autograd.Function):
    """Megatron's ``g``: forward, the partial outputs of all processes summed; the identity backward."""

    @staticmethod
    def forward(ctx, partial: torch.Tensor, log: CommunicationLog | None) -> torch.Tensor:
        out = partial.contiguous().clone()
        dist.all_reduce(out)  # sum over processes of (their hidden units) @ (their rows of fc2)
        if log is not None:
            log.add("forward", out.numel())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None  # d(sum of partials) / d(partial) = 1: every process gets the full output gradient


def _shard_range(size: int, rank: int, world_size: int, name: str) -> slice:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}")
    if size % world_size:
        raise ValueError(f"{name}={size} must be divisible by world_size={world_size}")
    part = size // world_size
    return slice(rank * part, (rank + 1) * part)


class ColumnParallelLinear(nn.Module):
    """One process's share of ``full`` split by output features: rows ``rank * n / P`` to ``(rank + 1) * n / P``
    of the weight (torch stores ``(out, in)``, so a column of ``x @ W.T`` is a row of ``W``) and of the bias.

    ``forward(x)`` takes the full input ``(..., in)`` and returns this process's ``(..., out / P)`` slice of the
    full output. Its input passes through Megatron's ``f`` (identity forward, all-reduce backward), because every
    process' slice depends on all of ``x`` and each one holds only part of ``x``'s gradient.

    Args:
        full: the unsplit ``nn.Linear``; its weights are copied (not shared). rank, world_size: this process and
            the number of processes ``P``; ``full.out_features`` must be divisible by ``P``.
        log: a :class:`CommunicationLog` to record the all-reduces in, or None.
        copy_input: pass the input through ``f``; False when the caller has done it once for several layers
            that read the same input (the query, key and value projections of :class:`TensorParallelAttention`).
    """

    def __init__(
        self,
        full: nn.Linear,
        rank: int,
        world_size: int,
        log: CommunicationLog | None = None,
        copy_input: bool = True,
    ) -> None:
        super().__init__()
        rows = _shard_range(full.out_features, rank, world_size, "out_features")
        self.in_features, self.out_features = full.in_features, rows.stop - rows.start
        self.weight = nn.Parameter(full.weight.detach()[rows].clone())  # (out / P, in)
        self.bias = None if full.bias is None else nn.Parameter(full.bias.detach()[rows].clone())
        self.rows, self.log, self.copy_input = rows, log, copy_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(..., in)`` -> ``(..., out / P)``."""
        check_shape(x, (*x.shape[:-1], self.in_features), "x")
        if self.copy_input:
            x = _CopyToTensorParallel.apply(x, self.log)
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear(nn.Module):
    """One process's share of ``full`` split by input features: columns ``rank * n / P`` to ``(rank + 1) * n / P``
    of the weight (rows of ``W.T``); the bias is kept whole and added once, after the sum.

    ``forward(x_part)`` takes this process' ``(..., in / P)`` slice of the input and returns the full output
    ``(..., out)``: the partial products of all processes summed by one all-reduce (Megatron's ``g``).

    Args:
        full: the unsplit ``nn.Linear``; its weights are copied. rank, world_size: as in
            :class:`ColumnParallelLinear`; ``full.in_features`` must be divisible by ``P``.
        log: a :class:`CommunicationLog`, or None.
    """

    def __init__(self, full: nn.Linear, rank: int, world_size: int, log: CommunicationLog | None = None) -> None:
        super().__init__()
        columns = _shard_range(full.in_features, rank, world_size, "in_features")
        self.in_features, self.out_features = columns.stop - columns.start, full.out_features
        self.weight = nn.Parameter(full.weight.detach()[:, columns].clone())  # (out, in / P)
        self.bias = None if full.bias is None else nn.Parameter(full.bias.detach().clone())
        self.columns, self.log = columns, log

    def forward(self, x_part: torch.Tensor) -> torch.Tensor:
        """``x_part`` of shape ``(..., in / P)`` -> ``(..., out)``, the same in every process."""
        check_shape(x_part, (*x_part.shape[:-1], self.in_features), "x_part")
        out = _ReduceFromTensorParallel.apply(F.linear(x_part, self.weight), self.log)
        return out if self.bias is None else out + self.bias  # added after the sum, so it is counted once


class TensorParallelFeedForward(nn.Module):
    """One process's share of a :class:`lmbook.transformer.FeedForward`: ``fc1`` column-split, GELU on the local
    ``d_ff / P`` hidden units, ``fc2`` row-split, and one all-reduce of the output.

    Args:
        full: the unsplit feed-forward network (dropout is not split and must be 0). rank, world_size: this
            process and ``P``; ``d_ff`` must be divisible by ``P``.

    Attributes:
        log: the :class:`CommunicationLog` of both layers' all-reduces.
    """

    def __init__(self, full: FeedForward, rank: int, world_size: int) -> None:
        super().__init__()
        if full.drop.p != 0.0:
            raise ValueError(f"TensorParallelFeedForward needs dropout 0, got {full.drop.p}")
        self.log = CommunicationLog()
        self.fc1 = ColumnParallelLinear(full.fc1, rank, world_size, self.log)
        self.act = full.act  # GELU acts on each hidden unit alone: no communication
        self.fc2 = RowParallelLinear(full.fc2, rank, world_size, self.log)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(..., C)`` (the same in every process) -> ``(..., C)`` (the same in every process)."""
        return self.fc2(self.act(self.fc1(x)))  # (..., C) -> (..., d_ff / P) -> (..., C), summed over processes


class TensorParallelAttention(nn.Module):
    """One process's share of a :class:`lmbook.attention.MultiHeadAttention`: ``H / P`` whole heads.

    The heads do not interact until the output projection, so the query, key and value projections are split by
    outputs (the features of this process' heads, one ``f`` for the three of them) and ``W_o`` by inputs, with
    one all-reduce after it: the same pattern as :class:`TensorParallelFeedForward`.

    Args:
        full: the unsplit attention layer (its ``dropout`` must be 0). rank, world_size: this process and ``P``;
            ``n_heads`` must be divisible by ``P``.
    """

    def __init__(self, full: MultiHeadAttention, rank: int, world_size: int) -> None:
        super().__init__()
        if full.dropout != 0.0:
            raise ValueError(f"TensorParallelAttention needs dropout 0, got {full.dropout}")
        _shard_range(full.n_heads, rank, world_size, "n_heads")  # whole heads per process
        self.log = CommunicationLog()
        self.n_heads, self.causal = full.n_heads // world_size, full.causal
        self.W_q, self.W_k, self.W_v = (
            ColumnParallelLinear(layer, rank, world_size, self.log, copy_input=False)
            for layer in (full.W_q, full.W_k, full.W_v)
        )
        self.W_o = RowParallelLinear(full.W_o, rank, world_size, self.log)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(B, T, C)`` (the same in every process) -> ``(B, T, C)``."""
        T = check_shape(x, ("B", "T", self.W_q.in_features), "x").shape[1]
        x = _CopyToTensorParallel.apply(x, self.log)  # once for the three projections
        q, k, v = (split_heads(W(x), self.n_heads) for W in (self.W_q, self.W_k, self.W_v))  # (B, H / P, T, D)
        mask = causal_mask(T, x.device) if self.causal else None
        out = scaled_dot_product_attention(q, k, v, mask)  # (B, H / P, T, D)
        return self.W_o(merge_heads(out))  # (B, T, C / P) -> (B, T, C), summed over processes


def _compare(split: nn.Module, full: nn.Module, x_ref, out_ref, x_tp, out_tp) -> dict:
    """The largest differences between a split layer and the unsplit one: output, input gradient, and each
    shard's weight and bias gradients against the same slice of the unsplit layer's."""

    def gap(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.detach() - b.detach()).abs().max())

    gaps = {"out": gap(out_tp, out_ref), "grad_x": gap(x_tp.grad, x_ref.grad)}
    for name, part in split.named_children():
        whole = getattr(full, name)
        if isinstance(part, ColumnParallelLinear):
            gaps[f"grad_{name}_weight"] = gap(part.weight.grad, whole.weight.grad[part.rows])
            gaps[f"grad_{name}_bias"] = gap(part.bias.grad, whole.bias.grad[part.rows])
        elif isinstance(part, RowParallelLinear):
            gaps[f"grad_{name}_weight"] = gap(part.weight.grad, whole.weight.grad[:, part.columns])
            gaps[f"grad_{name}_bias"] = gap(part.bias.grad, whole.bias.grad)
    return {
        **gaps,
        "allreduce_forward": split.log.count("forward"),
        "allreduce_backward": split.log.count("backward"),
        "numel_forward": split.log.numel("forward"),
        "numel_backward": split.log.numel("backward"),
        "params_local": sum(p.numel() for p in split.parameters()),
        "params_full": sum(p.numel() for p in full.parameters()),
    }


def tensor_parallel_check(
    d_model: int = 16, d_ff: int = 64, n_heads: int = 4, batch_size: int = 4, max_len: int = 5, seed: int = 0
) -> dict:
    """Worker: compare :class:`TensorParallelFeedForward` and :class:`TensorParallelAttention` (causal) with the
    unsplit ``FeedForward`` and ``MultiHeadAttention``, in float64.

    Run in every process after ``init_process_group`` (``run_workers("lmbook.model_parallel:tensor_parallel_check")``).
    Every process builds the same seeded layers and input, computes each unsplit layer's output and gradients
    (of a squared error against a seeded target) on its own as the reference, then its share of the split
    layer, and compares its shard of each gradient with the same slice of the reference gradient.

    Returns:
        ``{"rank": ..., "world_size": ..., "feed_forward": {...}, "attention": {...}}``; each layer's dict holds
        the largest absolute differences ``out``, ``grad_x`` and ``grad_<layer>_weight``/``grad_<layer>_bias``
        for each of its linear layers (``fc1``, ``fc2``; ``W_q``, ``W_k``, ``W_v``, ``W_o``), the all-reduce
        counts and elements per phase (``allreduce_forward``, ``allreduce_backward``, ``numel_forward``,
        ``numel_backward``), and the parameters held by this process (``params_local``) and by the unsplit layer
        (``params_full``).
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = {
            "feed_forward": (FeedForward(d_model, d_ff).double(), TensorParallelFeedForward),
            "attention": (MultiHeadAttention(d_model, n_heads, causal=True).double(), TensorParallelAttention),
        }
    x = torch.randn(batch_size, max_len, d_model, dtype=torch.float64, generator=generator)  # (B, T, C)
    target = torch.randn(batch_size, max_len, d_model, dtype=torch.float64, generator=generator)
    result = {"rank": rank, "world_size": world_size}
    for name, (full, parallel) in layers.items():
        x_ref = x.clone().requires_grad_()
        out_ref = full(x_ref)
        ((out_ref - target) ** 2).sum().backward()
        split = parallel(full, rank, world_size)
        x_tp = x.clone().requires_grad_()
        out_tp = split(x_tp)
        ((out_tp - target) ** 2).sum().backward()
        result[name] = _compare(split, full, x_ref, out_ref, x_tp, out_tp)
    return result


# ----- pipeline parallelism --------------------------------------------------------------------------------

SCHEDULES = ("gpipe", "1f1b")
"""The pipeline schedules :func:`pipeline_schedule` knows."""


@dataclass(frozen=True)
class PipelineStep:
    """One cell of a pipeline schedule: ``stage`` runs the ``phase`` (``"F"`` or ``"B"``) of micro-batch
    ``micro`` during time step ``step`` (every forward and every backward takes one step)."""

    stage: int
    step: int
    micro: int
    phase: str


def _check_pipeline(n_stages: int, n_micro: int) -> None:
    for name, value in (("n_stages", n_stages), ("n_micro", n_micro)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def bubble_fraction(n_stages: int, n_micro: int) -> float:
    """The idle share of a pipeline of ``p = n_stages`` stages over ``m = n_micro`` micro-batches,
    ``(p - 1) / (m + p - 1)`` (Huang et al. 2019, GPipe): the pipeline fills for ``p - 1`` steps and drains for
    ``p - 1`` steps, and each stage works ``m`` of the ``m + p - 1`` steps of each direction."""
    _check_pipeline(n_stages, n_micro)
    return (n_stages - 1) / (n_micro + n_stages - 1)


def _stage_programs(n_stages: int, n_micro: int, schedule: str) -> list[list[tuple[str, int]]]:
    """The order in which each stage runs its forwards and backwards."""
    programs = []
    for stage in range(n_stages):
        if schedule == "gpipe":  # every forward, then every backward
            program = [("F", i) for i in range(n_micro)] + [("B", i) for i in range(n_micro)]
        else:  # 1F1B: a few forwards to fill the pipeline, then one forward, one backward, ..., then the rest
            warmup = min(n_stages - 1 - stage, n_micro)
            program = [("F", i) for i in range(warmup)]
            for i in range(n_micro - warmup):
                program += [("F", warmup + i), ("B", i)]
            program += [("B", i) for i in range(n_micro - warmup, n_micro)]
        programs.append(program)
    return programs


def pipeline_schedule(n_stages: int, n_micro: int, schedule: str = "gpipe") -> list[PipelineStep]:
    """The table of a pipeline schedule: which stage runs which micro-batch's forward or backward at which step.

    Each stage runs its own list of operations in order (``"gpipe"``: all forwards then all backwards;
    ``"1f1b"``: ``p - 1 - stage`` forwards, then one forward and one backward in turn, then the last backwards),
    each as soon as what it needs is done: the forward of micro-batch ``i`` on stage ``s`` needs the forward of
    ``i`` on stage ``s - 1`` (its input), the backward on stage ``s`` needs the backward on ``s + 1`` (its output
    gradient), or on the last stage its own forward. One operation takes one step.

    Returns:
        the :class:`PipelineStep` rows, sorted by step and stage.
    """
    _check_pipeline(n_stages, n_micro)
    check_choice(schedule, SCHEDULES, "schedule")
    programs = _stage_programs(n_stages, n_micro, schedule)
    done: dict[tuple[str, int, int], int] = {}  # (phase, stage, micro) -> the step it ran in
    position = [0] * n_stages
    rows, step = [], 0
    while any(position[s] < len(programs[s]) for s in range(n_stages)):
        ran = []
        for stage in range(n_stages):
            if position[stage] == len(programs[stage]):
                continue
            phase, micro = programs[stage][position[stage]]
            if phase == "F":
                needs = ("F", stage - 1, micro) if stage > 0 else None
            else:
                needs = ("B", stage + 1, micro) if stage < n_stages - 1 else ("F", stage, micro)
            if needs is None or done.get(needs, step) < step:  # finished in an earlier step
                ran.append((phase, stage, micro))
                rows.append(PipelineStep(stage, step, micro, phase))
                position[stage] += 1
        for key in ran:
            done[key] = step
        if not ran:
            raise RuntimeError(f"the {schedule} schedule is stuck at step {step}")  # cannot happen for these two
        step += 1
    return rows


def schedule_bubble(rows: list[PipelineStep]) -> float:
    """The idle share of a schedule table: empty (stage, step) cells over all ``n_stages * n_steps`` cells."""
    n_stages = 1 + max(r.stage for r in rows)
    n_steps = 1 + max(r.step for r in rows)
    return 1.0 - len(rows) / (n_stages * n_steps)


def activations_in_flight(rows: list[PipelineStep]) -> list[int]:
    """Per stage, the largest number of micro-batches whose forward has run and whose backward has not: the
    activations that stage must keep at once (``n_micro`` on every stage under GPipe; at most ``n_stages`` under
    1F1B)."""
    n_stages = 1 + max(r.stage for r in rows)
    peak = [0] * n_stages
    held = [0] * n_stages
    for row in sorted(rows, key=lambda r: r.step):
        held[row.stage] += 1 if row.phase == "F" else -1
        peak[row.stage] = max(peak[row.stage], held[row.stage])
    return peak


def draw_schedule(rows: list[PipelineStep], ax, title: str | None = None) -> None:
    """Draw a schedule table on ``ax``: one row per stage, one column per step, forwards and backwards in two
    colours with their micro-batch number, idle cells left empty (the bubble)."""
    from matplotlib.patches import Rectangle  # imported here: importing lmbook loads no plotting library

    n_stages = 1 + max(r.stage for r in rows)
    n_steps = 1 + max(r.step for r in rows)
    colours = {"F": "#9ecae1", "B": "#fdae6b"}
    for row in rows:
        cell = Rectangle((row.step, row.stage), 1, 1, facecolor=colours[row.phase], edgecolor="black", linewidth=0.6)
        ax.add_patch(cell)
        ax.text(row.step + 0.5, row.stage + 0.5, f"{row.phase}{row.micro}", ha="center", va="center", fontsize=7)
    ax.set(xlim=(0, n_steps), ylim=(n_stages, 0), xlabel="time step", ylabel="stage")
    ax.set_yticks([s + 0.5 for s in range(n_stages)], [str(s) for s in range(n_stages)])
    ax.set_xticks(range(0, n_steps + 1, max(1, n_steps // 10)))
    ax.set_aspect("auto")
    if title:
        ax.set_title(title)
