"""What training a model costs: FLOPs, bytes of memory and days, from its parameters and tokens.

Introduced in chapter 9, Compute, memory and scale. Three questions are asked of any training run before it
starts, and each has a one-line answer:

- **Compute.** Training a model of ``N`` parameters on ``D`` tokens costs about ``6 N D`` floating-point
  operations (FLOPs): ``2 N D`` for the forward passes (:func:`forward_flops`) and ``4 N D`` for the backward
  passes (:func:`backward_flops`). :func:`lmbook.transformer.count_flops` adds the attention and output-layer
  terms that the rule leaves out.
- **Memory.** Weights, gradients and the optimiser's states take a fixed number of bytes per parameter that
  depends on the precision and the optimiser (:func:`training_memory`): 16 bytes for Adam in fp32, and also 16 in
  mixed precision, where fp32 master weights keep the updates accurate. Sharding them over ``P`` processes
  (ZeRO, :func:`zero_memory_per_device`) divides some or all of it by ``P``. Activations come on top and depend
  on the batch; :mod:`lmbook.memory` measures them.
- **Time.** FLOPs divided by what the accelerators really deliver (their peak times the utilisation that the
  run achieves) gives the wall-clock time (:func:`training_days`).

:data:`PUBLISHED_RUNS` holds published training runs (their configurations and token counts, with the papers'
own compute figures where they state one), so that the formulas can be checked against them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from lmbook.hardware import MEMORY_GB, PEAK_TFLOPS, SOURCE
from lmbook.testing import check_choice
from lmbook.transformer import KNOWN_MODELS, TransformerConfig, count_parameters

BYTES_PER_NUMBER = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
"""Bytes that one number takes in each storage format: 32-bit float, bfloat16, float16, 8-bit integer."""

TRAINING_PRECISIONS = ("fp32", "bf16", "fp16", "mixed")
"""Training precisions: everything in one format (``"fp32"``, ``"bf16"``, ``"fp16"``), or ``"mixed"``: 16-bit
weights and gradients for the arithmetic, with an fp32 master copy of the weights and fp32 optimiser states."""

OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}
"""Numbers the optimiser keeps per parameter: none for plain SGD, a velocity for SGD with momentum, and Adam's
two moving averages m (of the gradient) and v (of its square). AdamW keeps the same two."""

_SECONDS_PER_DAY = 86_400


def _check_count(value, name: str) -> None:
    """Raise ValueError unless ``value`` is a positive number (a count of parameters, tokens, devices...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def forward_flops(n_params: float, n_tokens: float) -> float:
    """FLOPs of the forward passes over ``n_tokens`` tokens: ``2 N D``.

    Almost all of a transformer's arithmetic is matrix products, and in a matrix product every weight meets
    every token once, in one multiply and one add (a multiply-add, 2 FLOPs). So each token costs 2 FLOPs per
    parameter. Attention's own products (``Q K^T`` and the weighted sum of V, which have no weights) and the
    embedding look-ups are left out; :func:`lmbook.transformer.count_flops` counts them.

    Args:
        n_params: ``N``, the number of parameters. n_tokens: ``D``, tokens processed.
    """
    _check_count(n_params, "n_params")
    _check_count(n_tokens, "n_tokens")
    return 2.0 * n_params * n_tokens


def backward_flops(n_params: float, n_tokens: float) -> float:
    """FLOPs of the backward passes over ``n_tokens`` tokens: ``4 N D``, twice the forward pass.

    For each layer ``y = x W`` the forward pass does one matrix product. The backward pass needs two of the
    same size: the gradient with respect to the layer's input, ``dL/dx = dL/dy W^T`` (to pass back to the layer
    below), and the gradient with respect to its weights, ``dL/dW = x^T dL/dy`` (to update them). Two products of
    ``2 N`` FLOPs per token each make ``4 N``. (The first layer's input gradient is not needed, a small saving
    that the rule ignores.)

    Args:
        n_params: ``N``, the number of parameters. n_tokens: ``D``, tokens processed.
    """
    return 2.0 * forward_flops(n_params, n_tokens)


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training compute in FLOPs: ``6 N D`` = forward ``2 N D`` + backward ``4 N D``.

    The rule of Kaplan et al. 2020 (*Scaling Laws for Neural Language Models*) and of the GPT-3 paper's compute
    table (Brown et al. 2020). The optimiser's update (a few FLOPs per parameter per *step*, not per token) is
    negligible beside it.

    Args:
        n_params: ``N``, the number of parameters. n_tokens: ``D``, training tokens.
    """
    return forward_flops(n_params, n_tokens) + backward_flops(n_params, n_tokens)


def training_memory(n_params: float, precision: str = "fp32", optimizer: str = "adam") -> dict[str, float]:
    """Bytes of the training state: weights, gradients, optimiser states and (in mixed precision) master weights.

    - ``"fp32"``, ``"bf16"``, ``"fp16"``: weights, gradients and the optimiser's states all in that format (as
      a torch model moved to that dtype and trained with ``torch.optim``, which keeps its states in the
      parameters' dtype). Adam in fp32: 4 + 4 + 8 = 16 bytes per parameter.
    - ``"mixed"``: the forward and backward passes use 16-bit weights and gradients (2 + 2 bytes), and the
      optimiser updates an fp32 master copy of the weights (4 bytes) with fp32 states (Adam's m and v, 8 bytes):
      16 bytes per parameter, the accounting of Rajbhandari et al. 2020 (*ZeRO: Memory Optimizations Toward
      Training Trillion Parameter Models*, arXiv:1910.02054). Mixed precision saves time and activation
      memory, not memory per parameter. (``torch.autocast`` keeps fp32 weights and gradients and makes the
      16-bit copies on the fly: 4 + 4 + 8, the same 16.)

    Activations are not included: they depend on the batch and the sequence length (see :mod:`lmbook.memory`).

    Args:
        n_params: ``N``. precision: one of :data:`TRAINING_PRECISIONS`. optimizer: ``"adam"`` (Adam or AdamW),
            ``"momentum"`` (SGD with momentum) or ``"sgd"`` (plain).

    Returns:
        ``{"weights", "gradients", "optimizer", "master_weights", "total"}`` in bytes (``"master_weights"`` is 0
        unless ``precision="mixed"``).
    """
    _check_count(n_params, "n_params")
    check_choice(precision, TRAINING_PRECISIONS, "precision")
    check_choice(optimizer, OPTIMIZER_STATES, "optimizer")
    compute = BYTES_PER_NUMBER["bf16" if precision == "mixed" else precision]  # bytes of the weights used in matmuls
    update = BYTES_PER_NUMBER["fp32"] if precision == "mixed" else compute  # bytes of what the optimiser updates
    memory = {
        "weights": float(compute * n_params),
        "gradients": float(compute * n_params),
        "optimizer": float(OPTIMIZER_STATES[optimizer] * update * n_params),
        "master_weights": float(BYTES_PER_NUMBER["fp32"] * n_params if precision == "mixed" else 0),
    }
    memory["total"] = sum(memory.values())
    return memory


ZERO_STAGES = (0, 1, 2, 3)
"""ZeRO's stages: 0 = plain data parallelism (everything copied on every process); 1 shards the optimiser states
(with the master weights), 2 also the gradients, 3 also the weights."""


def zero_memory_per_device(
    n_params: float, world_size: int, stage: int, precision: str = "mixed", optimizer: str = "adam"
) -> dict[str, float]:
    """Bytes of training state on each of ``world_size`` processes under ZeRO stage ``stage`` (0-3).

    Data parallelism keeps a full copy of :func:`training_memory` on every process. ZeRO (Rajbhandari et al. 2020,
    arXiv:1910.02054) gives each process only a ``1 / P`` share of some parts: stage 1 the optimiser states and
    master weights, stage 2 also the gradients, stage 3 also the weights (each process gathers the weights it
    needs just before using them). With Adam in mixed precision and ``N`` parameters that is ``16 N`` bytes per
    process at stage 0, ``4 N + 12 N / P`` at stage 1, ``2 N + 14 N / P`` at stage 2 and ``16 N / P`` at stage 3.
    PyTorch's FSDP with full sharding is stage 3. Temporary buffers (the gathered weights, communication
    buckets) are not included.

    Args:
        n_params: ``N``. world_size: ``P``, the number of processes. stage: 0, 1, 2 or 3.
        precision, optimizer: as in :func:`training_memory`.

    Returns:
        The same keys as :func:`training_memory`, per process, in bytes.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, numbers.Integral) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    check_choice(stage, ZERO_STAGES, "ZeRO stage")
    full = training_memory(n_params, precision, optimizer)
    sharded = {1: ("optimizer", "master_weights"), 2: ("optimizer", "master_weights", "gradients")}.get(
        stage, ("optimizer", "master_weights", "gradients", "weights") if stage == 3 else ()
    )
    memory = {name: full[name] / world_size if name in sharded else full[name] for name in full if name != "total"}
    memory["total"] = sum(memory.values())
    return memory


def training_days(flops: float, n_devices: int, peak_flops_per_device: float, utilisation: float) -> float:
    """Days of training: ``flops / (n_devices * peak_flops_per_device * utilisation)``, in days of 86,400 s.

    ``peak_flops_per_device`` is the datasheet's dense peak (FLOP/s) for the precision used; ``utilisation``
    (model FLOPs utilisation, MFU) is the fraction of it that the run achieves, typically 0.3-0.6 for large
    transformer training.

    Args:
        flops: training compute, e.g. from :func:`training_flops`. n_devices: accelerators working together.
        peak_flops_per_device: FLOP/s. utilisation: in ``(0, 1]``.
    """
    _check_count(flops, "flops")
    _check_count(n_devices, "n_devices")
    _check_count(peak_flops_per_device, "peak_flops_per_device")
    if isinstance(utilisation, bool) or not isinstance(utilisation, numbers.Real) or not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation!r}")
    return flops / (n_devices * peak_flops_per_device * utilisation) / _SECONDS_PER_DAY


# ----- published training runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedRun:
    """A published training run: the model's shape, how many tokens it saw, and what the paper states.

    Attributes:
        config: the model's shape (for :func:`lmbook.transformer.count_parameters`), or None where the book's
            configurations cannot express the architecture (then ``N`` is the published size). kind: ``"gpt"``
            or ``"bert"``.
        n_tokens: training tokens ``D`` as derived from the paper (see ``tokens_note``). published_params: the
            size the paper states. published_flops: the paper's own training compute in FLOPs, or None when it
            states none. source: the paper. tokens_note: how ``n_tokens`` follows from the paper's numbers.
    """

    config: TransformerConfig | None
    kind: str
    n_tokens: float
    published_params: float
    published_flops: float | None
    source: str
    tokens_note: str

    @property
    def n_params(self) -> float:
        """``N`` counted from the configuration (the published size when there is no configuration)."""
        if self.config is None:
            return self.published_params
        return count_parameters(self.config, self.kind)["total"]

    @property
    def flops(self) -> float:
        """``6 N D`` with :attr:`n_params`."""
        return training_flops(self.n_params, self.n_tokens)


_BERT_STEPS, _BERT_BATCH, _BERT_MAX_LEN = 1_000_000, 256, 512
"""BERT's pre-training schedule (Devlin et al. 2019, section A.2): 1M steps of 256 sequences of up to 512 tokens."""

PUBLISHED_RUNS: dict[str, PublishedRun] = {
    "GPT-3 175B": PublishedRun(
        TransformerConfig(vocab_size=50257, max_len=2048, d_model=12288, n_layers=96, n_heads=96),
        "gpt",
        n_tokens=300e9,
        published_params=175e9,
        published_flops=3.14e23,
        source="Brown et al. 2020, Language Models are Few-Shot Learners, arXiv:2005.14165 (Table 2.1, Table D.1)",
        tokens_note="300 billion training tokens, for every GPT-3 size (the paper's section 2.2 and Table D.1)",
    ),
    **{
        name: PublishedRun(
            KNOWN_MODELS[name].config,
            "bert",
            n_tokens=float(_BERT_STEPS * _BERT_BATCH * _BERT_MAX_LEN),
            published_params=KNOWN_MODELS[name].published,
            published_flops=None,
            source="Devlin et al. 2019, BERT: Pre-training of Deep Bidirectional Transformers for Language "
            "Understanding, arXiv:1810.04805",
            tokens_note="1,000,000 steps x 256 sequences x 512 tokens, counting every sequence at its full length "
            "(an upper bound: the paper trains 90% of the steps on sequences of 128)",
        )
        for name in ("BERT-base", "BERT-large")
    },
    "Chinchilla 70B": PublishedRun(
        None,
        "gpt",
        n_tokens=1.4e12,
        published_params=70e9,
        published_flops=None,
        source="Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv:2203.15556",
        tokens_note="1.4 trillion training tokens, as the paper states; its relative position encodings are not "
        "the book's GPT, so N is the published 70 billion",
    ),
}


@dataclass(frozen=True)
class Accelerator:
    """An accelerator's datasheet numbers: dense peak FLOP/s by precision and memory in bytes.

    Attributes:
        name: the product. peak_flops: ``{"fp32": ..., "bf16": ...}``, the dense peaks (without the "with
            sparsity" doubling some datasheets quote): fp32 on the ordinary cores, bf16 on the tensor cores.
        memory: bytes of accelerator memory. source: where the numbers are from.
    """

    name: str
    peak_flops: dict
    memory: float
    source: str

    def peak(self, precision: str) -> float:
        """The dense peak FLOP/s for a training precision: fp32 for ``"fp32"``, the 16-bit peak otherwise."""
        check_choice(precision, TRAINING_PRECISIONS, "precision")
        return self.peak_flops["fp32" if precision == "fp32" else "bf16"]


def _datasheet(key: str, name: str) -> Accelerator:
    peaks = PEAK_TFLOPS[key]
    return Accelerator(
        name,
        {"fp32": peaks["fp32"] * 1e12, "bf16": peaks["bf16"] * 1e12},
        MEMORY_GB[key] * 1e9,
        SOURCE.format(name=key, precision="fp32 and bf16"),
    )


ACCELERATORS: dict[str, Accelerator] = {
    "A100": _datasheet("A100", "NVIDIA A100 SXM 80GB"),
    "H100": _datasheet("H100", "NVIDIA H100 SXM 80GB"),
}
"""Two accelerators with their data-sheet peaks from :data:`lmbook.hardware.PEAK_TFLOPS` (dense; the H100 sheet's
1,979 TFLOP/s bf16 is with sparsity) and memory."""
