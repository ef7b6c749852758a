"""GPT-2 in the book's own code: OpenAI's checkpoints loaded into :class:`lmbook.gpt.GPT` by an explicit map.

Introduced in chapter 7, Attention and the Transformer, where the tiny GPT trained on the CPU becomes a real one.
GPT-2 (Radford et al. 2019, "Language models are unsupervised multitask learners") has exactly the architecture of
:class:`~lmbook.gpt.GPT`: learned positions, pre-LN blocks, a final layer norm and an LM head tied to the token
embeddings. Three details of its checkpoints need care, and :func:`gpt2_name_map` handles each one in the open:

- its linear layers are ``Conv1D`` modules, which store a weight as ``(in_features, out_features)``: the transpose
  of ``nn.Linear``'s ``(out, in)``, so each weight is transposed on the way in;
- queries, keys and values come from one fused layer, ``c_attn``, of width ``3C``: it is cut into ``W_q``, ``W_k``
  and ``W_v`` (columns ``0..C-1``, ``C..2C-1`` and ``2C..3C-1``);
- the LM head has no weight of its own in the model (it is the token embedding matrix, tied), so the checkpoint's
  ``lm_head.weight``, where there is one, is a second name for ``wte.weight``.

GPT-2 also uses the tanh approximation of GELU (``GPTConfig(gelu="tanh")``) and layer norms with ``eps = 1e-5``
(the book's default). The tests check the loaded model against ``transformers.GPT2LMHeadModel`` in float64.
"""

from __future__ import annotations

import json
import pathlib

import torch

from lmbook.checkpoint import LoadReport, Source, load_mapped, read_state_dict
from lmbook.gpt import GPT, GPTConfig
from lmbook.hub import DEFAULT_TIMEOUT, GPT2_FILES, resolve_hub_model

# GPT-2 small, the 124M model (Hugging Face hub name "gpt2"); "gpt2-medium", "-large" and "-xl" are 355M, 774M, 1.5B.
GPT2_SMALL = GPTConfig(50257, max_len=1024, d_model=768, n_layers=12, n_heads=12, gelu="tanh")

# GPT-2's activation names (transformers' ACT2FN) -> the book's GELU variants.
_GELU_NAMES = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "exact"}

# Checkpoint entries that are deliberately not loaded into a GPT, with the reason:
DOCUMENTED_UNUSED: dict[str, str] = {
    r"h\.\d+\.attn\.bias": "the causal mask stored as a (1, 1, max_len, max_len) buffer; not a weight",
    r"h\.\d+\.attn\.masked_bias": "the score old versions put at masked positions; not a weight",
    r"lm_head\.weight": "the LM head, tied to (the same tensor as) wte.weight",
}


def gpt2_config(hf_config) -> GPTConfig:
    """Our :class:`GPTConfig` for a GPT-2 configuration: a ``transformers.GPT2Config``, a ``config.json`` dict,
    or the path of a ``config.json`` (or of the folder holding one).

    Raises:
        ValueError: the configuration uses something :class:`GPT` does not have (another activation, another
            layer-norm ``eps``, untied embeddings).
    """
    if isinstance(hf_config, str | pathlib.Path):
        path = pathlib.Path(hf_config)
        hf_config = json.loads((path / "config.json" if path.is_dir() else path).read_text(encoding="utf-8"))
    d = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    activation = d.get("activation_function", "gelu_new")
    if activation not in _GELU_NAMES:
        raise ValueError(f"activation_function {activation!r} is not a GELU; expected one of {sorted(_GELU_NAMES)}")
    if d.get("layer_norm_epsilon", 1e-5) != 1e-5:
        raise ValueError(f"layer_norm_epsilon must be 1e-5 (our LayerNorm's), got {d['layer_norm_epsilon']}")
    if not d.get("tie_word_embeddings", True):
        raise ValueError("GPT-2 ties its LM head to the token embeddings; this configuration does not")
    return GPTConfig(
        vocab_size=d["vocab_size"],
        max_len=d["n_positions"],
        d_model=d["n_embd"],
        n_layers=d["n_layer"],
        n_heads=d["n_head"],
        d_ff=d.get("n_inner"),  # None means 4 * d_model, in both libraries
        gelu=_GELU_NAMES[activation],
    )


def gpt2_name_map(n_layers: int, d_model: int) -> dict[str, Source]:
    """``{our parameter name: checkpoint source}`` for a GPT-2 with ``n_layers`` blocks of width ``C = d_model``.

    Checkpoint names are those of ``GPT2Model`` (``wte.weight``, ``h.0.attn.c_attn.weight``, ...);
    :func:`load_gpt2_weights` strips the ``transformer.`` prefix of ``GPT2LMHeadModel`` checkpoints first.
    """
    C = d_model
    m: dict[str, Source] = {
        "token_embedding.weight": "wte.weight",  # (V, C) in both; also our LM head (tied)
        "position_embedding.embedding.weight": "wpe.weight",  # (max_len, C) in both
        "ln_f.weight": "ln_f.weight",
        "ln_f.bias": "ln_f.bias",
    }

    def transposed(w: torch.Tensor) -> torch.Tensor:
        return w.T  # Conv1D's (in, out) -> nn.Linear's (out, in)

    def column_block(i: int):
        # c_attn is one Conv1D of shape (C, 3C) = (in, out): output columns [q | k | v]. Block i of the columns,
        # transposed to nn.Linear's (out, in) = (C, C). Its bias (3C,) is cut the same way, without a transpose.
        def weight(w: torch.Tensor) -> torch.Tensor:
            return w[:, i * C : (i + 1) * C].T

        def bias(b: torch.Tensor) -> torch.Tensor:
            return b[i * C : (i + 1) * C]

        return weight, bias

    for i in range(n_layers):
        ours, hf = f"blocks.{i}.", f"h.{i}."
        for j, name in enumerate(("W_q", "W_k", "W_v")):
            weight, bias = column_block(j)
            m[ours + f"attn.{name}.weight"] = (hf + "attn.c_attn.weight", weight)  # (C, 3C) -> block j, transposed
            m[ours + f"attn.{name}.bias"] = (hf + "attn.c_attn.bias", bias)  # (3C,) -> block j
        m[ours + "attn.W_o.weight"] = (hf + "attn.c_proj.weight", transposed)  # (C, C) stored (in, out): transpose
        m[ours + "attn.W_o.bias"] = hf + "attn.c_proj.bias"
        m[ours + "ffn.fc1.weight"] = (hf + "mlp.c_fc.weight", transposed)  # (C, 4C) (in, out) -> (4C, C)
        m[ours + "ffn.fc1.bias"] = hf + "mlp.c_fc.bias"
        m[ours + "ffn.fc2.weight"] = (hf + "mlp.c_proj.weight", transposed)  # (4C, C) (in, out) -> (C, 4C)
        m[ours + "ffn.fc2.bias"] = hf + "mlp.c_proj.bias"
        for p in ("weight", "bias"):
            m[ours + f"ln1.{p}"] = hf + f"ln_1.{p}"  # pre-LN before attention
            m[ours + f"ln2.{p}"] = hf + f"ln_2.{p}"  # pre-LN before the feed-forward
    return m


def load_gpt2_weights(model: GPT, state_dict_or_path, strict: bool = True) -> LoadReport:
    """Copy a GPT-2 checkpoint (``GPT2Model`` or ``GPT2LMHeadModel``) into ``model``, shape-checking every tensor.

    Args:
        model: a :class:`GPT` with the checkpoint's sizes, tied embeddings and biases (see :func:`gpt2_config`).
        state_dict_or_path: ``{name: tensor}``, or a checkpoint file or folder
            (see :func:`lmbook.checkpoint.read_state_dict`).
        strict: raise ``KeyError`` for a missing parameter or an unexplained checkpoint entry.

    Returns:
        A :class:`lmbook.checkpoint.LoadReport`.
    """
    c = model.config
    if not (c.tied_embeddings and c.bias):
        raise ValueError("GPT-2 has tied embeddings and biases; build the GPT with gpt2_config(...)")
    sd = state_dict_or_path if isinstance(state_dict_or_path, dict) else read_state_dict(state_dict_or_path)
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}  # GPT2LMHeadModel -> GPT2Model names
    return load_mapped(model, sd, gpt2_name_map(c.n_layers, c.d_model), DOCUMENTED_UNUSED, strict=strict)


def load_pretrained_gpt2(name: str = "gpt2", timeout: float = DEFAULT_TIMEOUT):
    """OpenAI's GPT-2 from the Hugging Face hub in our :class:`GPT` (evaluation mode), with its tokenizer.

    Args:
        name: a hub name: ``"gpt2"`` (124M, about 550 MB to download once), ``"gpt2-medium"``, ...
        timeout: seconds to wait for the hub before giving up.

    Returns:
        ``(model, tokenizer)`` (a ``transformers.GPT2TokenizerFast``), or None without the hub; then a message
        says why. A copy in the local cache is used without asking the network.
    """
    folder, reason = resolve_hub_model(name, GPT2_FILES, timeout)
    if folder is None:
        print(f"Skipped: loading GPT-2 ({name!r}) needs the Hugging Face hub, and {reason}.")
        return None
    from transformers import GPT2TokenizerFast

    model = GPT(gpt2_config(folder))
    print(load_gpt2_weights(model, folder))
    return model.eval(), GPT2TokenizerFast.from_pretrained(str(folder))
