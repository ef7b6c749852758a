"""Pick the compute device for a cell: CUDA, then Apple's MPS, then the CPU.

Introduced in chapter 2; the GPU cells of chapters 7-9 rely on it.
"""

from __future__ import annotations


def device(verbose: bool = True):
    """Return the best available ``torch.device`` and, if ``verbose``, say which one was chosen and why."""
    import torch  # imported here so that `import lmbook` stays light

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        detail = torch.cuda.get_device_name(dev)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
        detail = "Apple GPU"
    else:
        dev = torch.device("cpu")
        detail = f"{torch.get_num_threads()} threads; no GPU found, so cells use their CPU size"
    if verbose:
        print(f"Using {dev.type} ({detail})")
    return dev


def autocast_dtype(dev):
    """The mixed-precision dtype for ``dev``: bfloat16 where supported, float16 on older GPUs, None on the CPU."""
    import torch

    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None
