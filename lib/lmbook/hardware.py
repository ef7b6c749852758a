"""GPU data-sheet numbers in one table: dense peak FLOP rates by precision, and memory.

Introduced in chapter 9, Compute, memory and scale, where they turn a model's FLOPs into days of training
(:data:`lmbook.cost.ACCELERATORS`, the compute calculator) and a measured speed into model FLOPs utilisation
(:func:`lmbook.throughput.device_peak`); ``benchmarks/run.py`` reads them too. Every one of those uses this table,
so a corrected figure is corrected everywhere.

The figures are NVIDIA's data sheets for the SXM versions unless the name says otherwise, in TFLOP/s for *dense*
arithmetic: ``"fp32"`` on the ordinary cores (no TF32), ``"bf16"``/``"fp16"`` on the tensor cores. Several sheets
print a figure "with sparsity" (2:4 structured sparsity, chapter 10), twice the dense rate; it is halved here,
e.g. the H100's 1,979 bf16 TFLOP/s become 989.5.
"""

from __future__ import annotations

PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"fp32": 51.0, "bf16": 756.5, "fp16": 756.5},
    "H100 NVL": {"fp32": 60.0, "bf16": 835.5, "fp16": 835.5},
    "H100": {"fp32": 67.0, "bf16": 989.5, "fp16": 989.5},
    "H200": {"fp32": 67.0, "bf16": 989.5, "fp16": 989.5},
    "A100": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32": 91.6, "bf16": 362.05, "fp16": 362.05},
    "L4": {"fp32": 30.3, "bf16": 121.0, "fp16": 121.0},
    "T4": {"fp32": 8.1, "fp16": 65.0},
    "V100": {"fp32": 15.7, "fp16": 125.0},
}
"""Peak dense TFLOP/s of GPUs by a part of their name and by precision. :func:`match_gpu` takes the first key
found in a device's name, so longer names come first ("H100 PCIe" before "H100")."""

MEMORY_GB: dict[str, float] = {"H100": 80.0, "H200": 141.0, "A100": 80.0, "L40S": 48.0, "L4": 24.0, "T4": 16.0}
"""Accelerator memory in GB (1e9 bytes) of the largest version each data sheet lists (A100: the 80 GB model)."""

SOURCE = "NVIDIA's data sheet for the {name} (dense {precision}, no sparsity)"


def match_gpu(device_name: str) -> str | None:
    """The key of :data:`PEAK_TFLOPS` that ``device_name`` (e.g. ``"NVIDIA H100 80GB HBM3"``) contains, or None."""
    return next((key for key in PEAK_TFLOPS if key in device_name), None)


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The data-sheet peak of a GPU named ``device_name`` in ``precision``; None when the table has no figure."""
    key = match_gpu(device_name)
    return None if key is None else PEAK_TFLOPS[key].get(precision)
