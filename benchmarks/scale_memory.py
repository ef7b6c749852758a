"""Benchmark of chapter 9 section 3: what activation checkpointing saves and what it costs, measured.

``bench_checkpointing()`` returns one section of ``benchmarks/run.py``'s results (``what``, ``rows``,
``targets``). For three sizes of the book's GPT (and ``GPTConfig.gpu`` where a GPU is present) it measures the
bytes of the tensors autograd keeps for the backward pass (:func:`lmbook.memory.activation_bytes`), plain and with
every block checkpointed (:func:`lmbook.recompute.checkpointed`), the time of a forward and backward pass
(:func:`lmbook.timing.time_call`, minimum of the repeats), and the largest difference between the two runs'
gradients. On a GPU it also reports the peak of allocated memory during a whole training pass.
"""

from __future__ import annotations

try:  # run as part of benchmarks/run.py (its folder is on sys.path) or imported from the repository root
    from run import target
except ImportError:  # pragma: no cover
    from benchmarks.run import target

CPU_SIZES = {"L=2, C=64, T=64": (2, 64, 64), "L=4, C=128, T=128": (4, 128, 128), "L=6, C=192, T=128": (6, 192, 128)}
BATCH = 4


def _measure(model, x, y, repeats: int) -> dict:
    """Kept bytes, time per pass, gradients and (on a GPU) peak memory of one model, plain or checkpointed."""
    import torch

    from lmbook.memory import activation_bytes
    from lmbook.timing import time_call

    def train_pass():
        model.zero_grad(set_to_none=True)
        model.loss(x, y).backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    kept = activation_bytes(lambda: model.loss(x, y), exclude=model.parameters()).saved_bytes
    seconds = time_call(train_pass, repeats=repeats, statistic="min")
    peak = None
    if x.is_cuda:
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        train_pass()
        peak = torch.cuda.max_memory_allocated() - start
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    model.loss(x, y).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return {"kept_bytes": kept, "seconds": seconds, "peak_bytes": peak, "grads": grads}


def bench_checkpointing(quick: bool = False) -> dict:
    """Activation checkpointing at three CPU sizes of the GPT (and the GPU size on a GPU): memory, time, equality."""
    import torch

    from lmbook.device import device as pick_device
    from lmbook.gpt import GPT, GPTConfig
    from lmbook.recompute import block_activation_bytes, checkpointed
    from lmbook.text import CharTokenizer, book_corpus, get_batch

    repeats = 3 if quick else 7
    text = book_corpus()
    tokenizer = CharTokenizer(text)
    ids = torch.tensor(tokenizer.encode(text))
    V = tokenizer.vocab_size
    cases = [
        (name, GPTConfig(V, max_len=T, d_model=C, n_layers=L, n_heads=4), torch.device("cpu"), BATCH)
        for name, (L, C, T) in CPU_SIZES.items()
    ]
    gpu = pick_device(verbose=False)
    if gpu.type == "cuda":
        cases.append(("GPTConfig.gpu (no dropout)", GPTConfig.gpu(V, dropout=0.0), gpu, 16))
    rows, targets = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the notebooks run; small models are faster on one thread of a shared CPU
    try:
        for name, config, dev, batch in cases:
            model = GPT(config, seed=0).to(dev)
            x, y = get_batch(ids, batch, config.max_len, torch.Generator().manual_seed(0), dev)
            plain = _measure(model, x, y, repeats)
            with checkpointed(model):
                ckpt = _measure(model, x, y, repeats)
            per_block = block_activation_bytes(batch, config.max_len, config.d_model, config.n_heads, config.d_ff)
            predicted_saving = config.n_layers * (per_block - 4 * batch * config.max_len * config.d_model)
            difference = float((plain["grads"] - ckpt["grads"]).abs().max())
            device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
            rows.append({
                "size": name, "device": device_name, "parameters": sum(p.numel() for p in model.parameters()),
                "batch": batch, "context": config.max_len,
                "plain_mb": plain["kept_bytes"] / 1e6, "checkpointed_mb": ckpt["kept_bytes"] / 1e6,
                "memory_ratio": plain["kept_bytes"] / ckpt["kept_bytes"],
                "plain_ms": 1e3 * plain["seconds"], "checkpointed_ms": 1e3 * ckpt["seconds"],
                "time_ratio": ckpt["seconds"] / plain["seconds"],
                "plain_peak_mb": None if plain["peak_bytes"] is None else plain["peak_bytes"] / 1e6,
                "checkpointed_peak_mb": None if ckpt["peak_bytes"] is None else ckpt["peak_bytes"] / 1e6,
                "largest_gradient_difference": difference,
            })  # fmt: skip
            targets.append(target(f"{name}: checkpointed gradients equal the plain ones", difference, 1e-6, ""))
            if not config.fused_attention:  # the formula counts the from-scratch block
                off = abs(plain["kept_bytes"] - ckpt["kept_bytes"] - predicted_saving)
                targets.append(target(f"{name}: saving equals the formula, bytes off", off, 0, "B"))
    finally:
        torch.set_num_threads(threads)
    return {
        "what": f"activation checkpointing of every block of the book's GPT (lmbook.recompute.checkpointed), batch of "
        f"{BATCH} windows on the CPU (16 on a GPU), float32: bytes of the tensors autograd keeps for the backward "
        "pass (lmbook.memory.activation_bytes), plain and checkpointed; one forward and backward pass, minimum of "
        f"{repeats} (one CPU thread); on a GPU also the peak of allocated memory during a pass. The checkpointed "
        "time includes recomputing each block's forward pass in the backward pass",
        "rows": rows,
        "targets": targets,
    }


if __name__ == "__main__":  # a quick look: .venv/bin/python benchmarks/scale_memory.py
    import json

    print(json.dumps(bench_checkpointing(quick=True), indent=1, default=str))
