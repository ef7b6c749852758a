"""Pick the compute device for a cell: CUDA, then Apple's MPS, then the CPU.

Introduced in chapter 2; the GPU cells of chapters 7-9 rely on it. :func:`autocast_dtype` picks the
mixed-precision dtype of a training run and :func:`training_device` is the training loops' one rule for where
they run.
"""

from __future__ import annotations

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


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


def autocast_dtype(dev, amp: str = "auto"):
    """The mixed-precision dtype of a training run on ``dev``, or None for none (plain float32).

    Args:
        dev: a ``torch.device`` or name.
        amp: ``"auto"``: bfloat16 on a GPU that supports it, float16 on an older GPU (the loop then needs a
            gradient scaler, see :func:`lmbook.loop.make_scaler`), None on the CPU and Apple's GPU;
            ``"bf16"`` or ``"fp16"``: that dtype whatever the device; ``"off"``: None.
    """
    import torch

    from lmbook.testing import check_choice

    check_choice(amp, AMP_CHOICES, "amp")
    dev = torch.device(dev)
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def training_device(model, device=None):
    """The book's one rule for where a training loop runs: ``device`` when given, else where ``model`` is.

    Every loop (:func:`lmbook.training.fit_classifier`, :func:`lmbook.loop.train_lm`, :func:`lmbook.mlm.pretrain_mlm`,
    :func:`lmbook.finetune.finetune`) follows it and moves the model there, so nothing moves behind the reader's
    back: to train on a GPU, pass ``device=lmbook.device()`` or move the model first.
    """
    import torch

    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
