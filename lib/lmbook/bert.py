"""BERT: a bidirectional transformer encoder, built from chapter 7's parts, and a loader for pre-trained weights.

Introduced in chapter 8, BERT: pre-training and fine-tuning. BERT is **encoder-only**: every token attends to
every other token, left and right (no causal mask), so each output vector describes its token *in context*.
It turns text into vectors for classification, search or tagging; it does not generate text (machine
translation needs a decoder). The architecture:

1. :class:`BertEmbeddings`: token + learned position + **segment** (sentence A or B) embeddings, added, then a
   layer norm and dropout;
2. :class:`BertEncoder`: ``L`` **post-LN** :class:`~lmbook.transformer.TransformerBlock` s
   (``x = ln1(x + attn(x))``, ``x = ln2(x + ffn(x))``), exact (erf) GELU, layer-norm ``eps = 1e-12``;
3. the **pooler**: ``tanh(Linear(h_[CLS]))``, one vector per input, trained by next-sentence prediction.

BERT-base has ``L = 12``, ``C = 768``, ``H = 12`` and about 110M parameters (BERT-large, ``L = 24``,
``C = 1024``, has about 340M). The book's offline model is **all-MiniLM-L6-v2** (``L = 6``, ``C = 384``, 22.7M
parameters, BERT-base's vocabulary), a BERT-shaped encoder distilled and tuned for sentence embeddings; it comes
as a Python package, so it needs no download (:func:`lmbook.hub.offline_model_path`; every network access of the
book is in :mod:`lmbook.hub`).

:func:`load_hf_weights` copies a Hugging Face checkpoint into :class:`BertModel` by an explicit table of names,
checking every shape; the tests check that the result computes the same hidden states as
``transformers.BertModel``.
"""

from __future__ import annotations

import json
import pathlib
import re
import warnings
from dataclasses import dataclass, replace

import torch
from torch import nn

from lmbook.checkpoint import LoadReport, load_mapped, read_state_dict
from lmbook.hub import BERT_FILES, DEFAULT_TIMEOUT, offline_model_path, resolve_hub_model
from lmbook.positional import LearnedPositionalEmbedding
from lmbook.seeding import private_seed
from lmbook.testing import check_shape
from lmbook.transformer import LayerNorm, TransformerBlock, TransformerConfig, check_sizes
from lmbook.wordpiece import WordPieceTokenizer


@dataclass(frozen=True)
class BertConfig:
    """The size of a :class:`BertModel`, in the names every config of the book uses (Hugging Face's in brackets).

    Attributes:
        vocab_size: ``V`` (vocab_size). d_model: width ``C`` (hidden_size). n_layers: blocks ``L``
            (num_hidden_layers). n_heads: ``H`` (num_attention_heads). d_ff: feed-forward width
            (intermediate_size, ``4 C`` in BERT). max_len: number of learned positions
            (max_position_embeddings). type_vocab_size: number of segments (2: sentence A and B).
        eps: the layer norms' epsilon (layer_norm_eps). dropout: on embeddings, attention weights and branch
            outputs while training (hidden_dropout_prob). pad_id: the id of ``[PAD]`` (pad_token_id).
        fused_attention: use torch's fused attention kernel (same result, faster on a GPU).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_len: int = 512
    type_vocab_size: int = 2
    eps: float = 1e-12
    dropout: float = 0.1
    pad_id: int = 0
    fused_attention: bool = False

    def __post_init__(self) -> None:
        check_sizes(self)

    @classmethod
    def from_json(cls, path) -> BertConfig:
        """Read a Hugging Face ``config.json`` (a file, or a folder containing one); its names map to ours."""
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "config.json"
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act={d['hidden_act']!r}; only the exact 'gelu' of BERT is supported")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute (learned) position embeddings are supported")
        return cls(
            vocab_size=d["vocab_size"],
            d_model=d["hidden_size"],
            n_layers=d["num_hidden_layers"],
            n_heads=d["num_attention_heads"],
            d_ff=d["intermediate_size"],
            max_len=d.get("max_position_embeddings", 512),
            type_vocab_size=d.get("type_vocab_size", 2),
            eps=d.get("layer_norm_eps", 1e-12),
            dropout=d.get("hidden_dropout_prob", 0.1),
            pad_id=d.get("pad_token_id", 0) or 0,
        )

    @classmethod
    def tiny(cls, vocab_size: int = 30522, **overrides) -> BertConfig:
        """A BERT small enough to pre-train on a CPU for a few seconds: ``C = 64``, 2 layers, 4 heads, 128 positions."""
        base = cls(vocab_size, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_len=128, dropout=0.1)
        return replace(base, **overrides)

    @classmethod
    def base(cls, **overrides) -> BertConfig:
        """BERT-base's shape (uncased vocabulary): ``L = 12``, ``C = 768``, ``H = 12``, about 110M parameters."""
        return replace(cls(30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072), **overrides)

    def transformer_config(self) -> TransformerConfig:
        """The same shape as a :class:`lmbook.transformer.TransformerConfig`, for ``count_parameters(..., "bert")``."""
        return TransformerConfig(
            self.vocab_size, self.max_len, self.d_model, self.n_layers, self.n_heads,
            d_ff=self.d_ff, type_vocab_size=self.type_vocab_size,
        )  # fmt: skip


class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, then a layer norm and dropout: ``(B, T)`` ids -> ``(B, T, C)``.

    Attributes:
        token: ``nn.Embedding(V, C)``. position: :class:`~lmbook.positional.LearnedPositionalEmbedding`.
        segment: ``nn.Embedding(type_vocab_size, C)``. ln: :class:`~lmbook.transformer.LayerNorm`.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        c = config
        self.token = nn.Embedding(c.vocab_size, c.d_model)
        self.position = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.segment = nn.Embedding(c.type_vocab_size, c.d_model)
        self.ln = LayerNorm(c.d_model, c.eps)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``input_ids`` and ``token_type_ids`` of shape ``(B, T)`` -> ``(B, T, C)``."""
        B, T = check_shape(input_ids, ("B", "T"), "input_ids").shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # everything is sentence A
        check_shape(token_type_ids, (B, T), "token_type_ids")
        x = self.token(input_ids) + self.position(T) + self.segment(token_type_ids)  # (B,T,C) + (T,C) + (B,T,C)
        return self.drop(self.ln(x))


class BertEncoder(nn.Module):
    """``L`` post-LN, bidirectional transformer blocks: ``(B, T, C)`` -> ``(B, T, C)``.

    Attributes:
        blocks: ``nn.ModuleList`` of :class:`~lmbook.transformer.TransformerBlock` (``pre_ln=False``,
            ``causal=False``).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        c = config
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, causal=False, pre_ln=False, dropout=c.dropout, d_ff=c.d_ff,
                             fused=c.fused_attention, eps=c.eps)
            for _ in range(c.n_layers)
        )  # fmt: skip

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, all_layers: bool = False):
        """``x`` ``(B, T, C)``, ``mask`` boolean ``(B, 1, 1, T)`` (True on real tokens) -> ``(B, T, C)``.

        With ``all_layers`` the result is the list of the input and every block's output (``L + 1`` tensors).
        """
        outputs = [x]
        for block in self.blocks:
            x = block(x, mask)
            outputs.append(x)
        return outputs if all_layers else x


class BertModel(nn.Module):
    """BERT's encoder with its pooler: ``(B, T)`` token ids -> hidden states ``(B, T, C)`` and pooled ``(B, C)``.

    Args:
        config: the sizes. seed: seeds the initial weights on a private copy of torch's random state (the
            caller's is left alone); None draws them from the global state.

    Initial weights follow BERT: normal with standard deviation 0.02, biases 0, layer norms 1 and 0.

    Attributes:
        embeddings: :class:`BertEmbeddings`. encoder: :class:`BertEncoder`. pooler: ``nn.Linear(C, C)``.
    """

    def __init__(self, config: BertConfig, seed: int | None = 0) -> None:
        super().__init__()
        self.config = config
        with private_seed(seed):
            self._build()

    def _build(self) -> None:
        self.embeddings = BertEmbeddings(self.config)
        self.encoder = BertEncoder(self.config)
        self.pooler = nn.Linear(self.config.d_model, self.config.d_model)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear | nn.Embedding):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _key_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The ``(B, T)`` 0/1 attention mask as the ``(B, 1, 1, T)`` boolean key mask of the attention layers."""
        if attention_mask is None:
            if bool((input_ids == self.config.pad_id).any()):
                warnings.warn(
                    "input_ids contain [PAD] tokens but no attention_mask was given: every token will attend to "
                    "the padding. Pass the attention_mask of the batch (1 on real tokens, 0 on padding).",
                    stacklevel=3,
                )
            return None
        check_shape(attention_mask, tuple(input_ids.shape), "attention_mask")
        if attention_mask.dtype != torch.bool:
            if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold 1 (real token) and 0 (padding) only")
            attention_mask = attention_mask == 1
        return attention_mask[:, None, None, :]  # (B, T) -> (B, 1, 1, T): every head and query ignores padding

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch.

        Args:
            input_ids: ``(B, T)`` token ids. token_type_ids: ``(B, T)`` segment ids (all 0 when None).
            attention_mask: ``(B, T)``, 1 on real tokens and 0 on padding (None: attend to everything).

        Returns:
            ``hidden`` ``(B, T, C)``, the last block's output, and ``pooled`` ``(B, C)``, which is
            ``tanh(pooler(hidden[:, 0]))``: a transformation of the ``[CLS]`` vector.
        """
        mask = self._key_mask(input_ids, attention_mask)
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), mask)  # (B, T, C)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # the [CLS] vector -> (B, C)
        return hidden, pooled

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """The embeddings' output and every block's output: ``L + 1`` tensors of shape ``(B, T, C)``."""
        mask = self._key_mask(input_ids, attention_mask)
        return self.encoder(self.embeddings(input_ids, token_type_ids), mask, all_layers=True)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----- loading Hugging Face weights ---------------------------------------------------------------------------


# Checkpoint entries that are deliberately not loaded into a BertModel, with the reason:
DOCUMENTED_UNUSED: dict[str, str] = {
    r"embeddings\.position_ids": "a buffer holding 0, 1, ..., max_len - 1; not a weight",
    r"cls\.seq_relationship\..*": "the next-sentence-prediction head of pre-training",
    r"cls\.predictions\..*": "the masked-language-model head (lmbook.mlm.BertForMaskedLM loads it)",
    r"cls\.predictions\.decoder\.weight": "the MLM output layer, tied to (equal to) the word embeddings",
    r"cls\.predictions\.decoder\.bias": "a second name of cls.predictions.bias, the MLM output layer's bias",
}


def bert_name_map(n_layers: int, prefix: str = "", hf_prefix: str = "") -> dict[str, str]:
    """``{our parameter name: Hugging Face name}`` for a BERT encoder with ``n_layers`` blocks.

    No weight needs a transpose: Hugging Face's BERT stores every dense layer as an ``nn.Linear``, whose weight
    is ``(out_features, in_features)`` exactly like ours (``query.weight`` is ``(C, C)``, ``intermediate.dense``
    ``(4C, C)``, ``output.dense`` ``(C, 4C)``). (GPT-2's checkpoints, by contrast, store ``(in, out)`` and do
    need ``.T``.) Old checkpoints call layer-norm parameters ``gamma``/``beta``; :func:`load_hf_weights` renames
    them to ``weight``/``bias`` before looking them up.
    """
    m = {
        "embeddings.token.weight": "embeddings.word_embeddings.weight",  # (V, C)
        "embeddings.position.embedding.weight": "embeddings.position_embeddings.weight",  # (max_len, C)
        "embeddings.segment.weight": "embeddings.token_type_embeddings.weight",  # (type_vocab_size, C)
        "embeddings.ln.weight": "embeddings.LayerNorm.weight",
        "embeddings.ln.bias": "embeddings.LayerNorm.bias",
        "pooler.weight": "pooler.dense.weight",  # (C, C), (out, in) in both
        "pooler.bias": "pooler.dense.bias",
    }
    for i in range(n_layers):
        ours, hf = f"encoder.blocks.{i}.", f"encoder.layer.{i}."
        for p in ("weight", "bias"):
            m[ours + f"attn.W_q.{p}"] = hf + f"attention.self.query.{p}"  # (C, C): no transpose
            m[ours + f"attn.W_k.{p}"] = hf + f"attention.self.key.{p}"  # (C, C): no transpose
            m[ours + f"attn.W_v.{p}"] = hf + f"attention.self.value.{p}"  # (C, C): no transpose
            m[ours + f"attn.W_o.{p}"] = hf + f"attention.output.dense.{p}"  # (C, C): no transpose
            m[ours + f"ln1.{p}"] = hf + f"attention.output.LayerNorm.{p}"  # post-LN after attention
            m[ours + f"ffn.fc1.{p}"] = hf + f"intermediate.dense.{p}"  # (4C, C): no transpose
            m[ours + f"ffn.fc2.{p}"] = hf + f"output.dense.{p}"  # (C, 4C): no transpose
            m[ours + f"ln2.{p}"] = hf + f"output.LayerNorm.{p}"  # post-LN after the feed-forward
    return {prefix + k: hf_prefix + v for k, v in m.items()}


def _normalise_hf_names(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Old layer-norm names (``gamma``, ``beta``) -> ``weight``, ``bias``; add or drop the ``bert.`` prefix so the
    keys of the encoder read ``{prefix}embeddings...``."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        if key.startswith("bert."):
            key = prefix + key[len("bert.") :]  # BertForMaskedLM / BertForPreTraining checkpoints
        elif key.startswith(("embeddings.", "encoder.", "pooler.")):
            key = prefix + key  # BertModel checkpoints
        out[key] = value
    return out


def load_hf_weights(model: nn.Module, state_dict_or_path, strict: bool = True) -> LoadReport:
    """Copy a Hugging Face BERT checkpoint into ``model`` (a :class:`BertModel`, or a model with ``hf_name_map``).

    Every tensor is found by the explicit name table of :func:`bert_name_map` and shape-checked before it is
    copied (converted to the model's dtype).

    Args:
        model: the model to fill (its config must have the checkpoint's sizes).
        state_dict_or_path: ``{name: tensor}``, or a checkpoint file or folder (see :func:`read_state_dict`).
        strict: raise ``KeyError`` when one of our parameters is missing from the checkpoint (except those in
            the model's ``hf_optional``: the pooler of a :class:`lmbook.mlm.BertForMaskedLM`), or when the
            checkpoint has entries that :data:`DOCUMENTED_UNUSED` does not explain.

    Raises:
        ShapeError: a checkpoint tensor has another shape than our parameter; the message names both.

    Returns:
        A :class:`LoadReport`.
    """
    if isinstance(model, BertModel):
        name_map, prefix = bert_name_map(model.config.n_layers), ""
    elif hasattr(model, "hf_name_map"):
        name_map, prefix = model.hf_name_map(), getattr(model, "hf_prefix", "")
    else:
        raise TypeError(f"cannot load BERT weights into a {type(model).__name__}")
    sd = state_dict_or_path
    if not isinstance(sd, dict):
        sd = read_state_dict(sd)
    sd = _normalise_hf_names(sd, prefix)
    optional = getattr(model, "hf_optional", ())  # parameters the model does not use for its output
    return load_mapped(model, sd, name_map, DOCUMENTED_UNUSED, optional, strict)


# ----- pre-trained models ----------------------------------------------------------------------------------------


def _tokenizer_for(folder: pathlib.Path) -> WordPieceTokenizer:
    lower = True
    config = folder / "tokenizer_config.json"
    if config.exists():
        lower = bool(json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True))
    return WordPieceTokenizer(folder / "vocab.txt", lower=lower)


def load_folder(folder) -> tuple[BertModel, WordPieceTokenizer]:
    """Build a :class:`BertModel` and its tokenizer from a folder with config.json, vocab.txt and weights."""
    folder = pathlib.Path(folder)
    model = BertModel(BertConfig.from_json(folder))
    load_hf_weights(model, folder)
    return model.eval(), _tokenizer_for(folder)


def load_pretrained(
    name: str = "minilm", timeout: float = DEFAULT_TIMEOUT
) -> tuple[BertModel, WordPieceTokenizer, str]:
    """A pre-trained BERT, in evaluation mode, with its tokenizer.

    Args:
        name: ``"minilm"`` (all-MiniLM-L6-v2, offline, 22.7M parameters), or a Hugging Face hub name such as
            ``"bert-base-uncased"`` (110M parameters, downloaded once, about 440 MB).
        timeout: seconds to wait for the hub before giving up.

    Returns:
        ``(model, tokenizer, source)``; ``source`` names the model actually loaded: ``"minilm"`` when ``name``
        could not be fetched (no network), in which case a message says so.
    """
    if name != "minilm":
        folder, reason = resolve_hub_model(name, BERT_FILES, timeout)
        if folder is not None:
            model, tokenizer = load_folder(folder)
            return model, tokenizer, name
        print(f"Could not fetch {name!r} from the Hugging Face hub: {reason}; using the offline model minilm.")
    model, tokenizer = load_folder(offline_model_path())
    return model, tokenizer, "minilm"
