"""WordPiece: BERT's sub-word tokenizer, written out step by step and checked against Hugging Face's.

Introduced in chapter 8, BERT: pre-training and fine-tuning. A character tokenizer (chapter 7) needs long
sequences; a word tokenizer needs an enormous vocabulary and still meets unknown words. **WordPiece** sits in
between: a fixed vocabulary of about 30 000 pieces holds the frequent words whole and splits rare words into
frequent parts, so that almost no word is unknown::

    "tokenization"  ->  ["token", "##ization"]

A piece that continues a word starts with ``##``. Turning a text into token ids takes three steps:

1. :func:`basic_tokenize` cleans the text and cuts it into words: control characters are removed, every kind of
   white space becomes a space, Chinese/Japanese/Korean ideographs become words of their own, the text is
   lower-cased and its accents are stripped (``"Café"`` -> ``"cafe"``), and every punctuation character becomes a
   word of its own;
2. :func:`wordpiece` splits each word greedily, always taking the **longest** vocabulary piece that matches at
   the current position; a word that cannot be covered completely becomes ``[UNK]`` as a whole;
3. :class:`WordPieceTokenizer` looks the pieces up in the vocabulary and adds the **special tokens**: ``[CLS]``
   at the start (its final vector summarises the input), ``[SEP]`` after each segment, ``[PAD]`` to fill short
   sequences of a batch, ``[MASK]`` for masked-language-model training.

A batch also carries ``token_type_ids`` (0 for the first segment, 1 for the second) and an ``attention_mask``
that is **1 on real tokens and 0 on padding**: the model must not attend to ``[PAD]``. (A mask of ones
everywhere "works" without an error and silently lets padding change the results.)

The output equals ``transformers.BertTokenizer`` on an uncased vocabulary such as bert-base-uncased's, which
the tests check sentence by sentence.
"""

from __future__ import annotations

import pathlib
import re
import unicodedata
from dataclasses import dataclass

import torch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Code-point blocks of CJK ideographs (not Hangul, Hiragana or Katakana, which are written with spaces or are
# split by WordPiece like any other script).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def load_vocab(path) -> dict[str, int]:
    """Read a ``vocab.txt`` file (one token a line) into ``{token: id}``; the id is the line number from 0."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    return vocab


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    # Tab, newline and carriage return count as white space, not as control characters.
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # All non-alphanumeric printable ASCII characters count, including $ + < = > ^ ` | ~ (Unicode calls them
    # symbols, not punctuation).
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _strip_accents(text: str) -> str:
    """Decompose each character (NFD: ``"é"`` -> ``"e"`` + a combining accent) and drop the combining marks."""
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def basic_tokenize(text: str, lower: bool = True) -> list[str]:
    """Clean ``text`` and cut it into words and punctuation marks, as BERT's basic tokenizer does.

    Args:
        text: any string. lower: lower-case the text and strip its accents (an "uncased" model).

    Returns:
        The words, e.g. ``basic_tokenize("Héllo, World!")`` -> ``["hello", ",", "world", "!"]``.
    """
    chars = []
    for ch in text:
        if ch in ("\x00", "\ufffd") or _is_control(ch):
            continue  # removed
        if _is_whitespace(ch):
            chars.append(" ")
        elif _is_cjk(ch):
            chars.append(f" {ch} ")  # every ideograph is a word of its own
        else:
            chars.append(ch)
    text = "".join(chars)
    if lower:
        # Accents first, then lower case, one character at a time (so a final capital sigma becomes a plain
        # sigma, as in the reference implementation; str.lower would choose the word-final form).
        text = "".join(ch.lower() for ch in _strip_accents(text))
    words = []
    for token in text.split():
        current = ""
        for ch in token:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                words.append(ch)  # each punctuation character is a word
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    return words


def wordpiece(word: str, vocab, unk: str = "[UNK]", max_chars: int = 100) -> list[str]:
    """Split one word into vocabulary pieces, greedily taking the longest piece that matches, left to right.

    Pieces after the first carry the prefix ``##``. If some position cannot be matched by any piece, the whole
    word becomes ``[unk]`` (not just the part that failed); so does a word longer than ``max_chars`` characters.

    Args:
        word: one word from :func:`basic_tokenize`. vocab: the vocabulary (anything supporting ``in``).

    Example:
        >>> vocab = {"un", "##aff", "##able", "##a"}
        >>> wordpiece("unaffable", vocab)
        ['un', '##aff', '##able']
        >>> wordpiece("unx", vocab)
        ['[UNK]']
    """
    if len(word) > max_chars:
        return [unk]
    pieces = []
    start = 0
    while start < len(word):
        prefix = "##" if start > 0 else ""
        for end in range(len(word), start, -1):  # longest candidate first
            if prefix + word[start:end] in vocab:
                pieces.append(prefix + word[start:end])
                start = end
                break
        else:
            return [unk]  # nothing matches at ``start``
    return pieces


@dataclass(frozen=True)
class Encoding:
    """One encoded input: lists of equal length ``T``.

    Attributes:
        input_ids: the token ids. token_type_ids: 0 for the first segment (with ``[CLS]`` and its ``[SEP]``),
            1 for the second. attention_mask: 1 on real tokens, 0 on padding.
    """

    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


class WordPieceTokenizer:
    """BERT's tokenizer: :func:`basic_tokenize`, then :func:`wordpiece`, then ids and special tokens.

    Args:
        vocab_path: a ``vocab.txt`` file (e.g. ``lmbook.hub.offline_model_path() / "vocab.txt"``).
        lower: lower-case and strip accents (True for uncased models).

    Attributes:
        vocab: ``{token: id}``. inv_vocab: ``inv_vocab[id]`` is the token. vocab_size: ``len(vocab)``.
        pad_id, unk_id, cls_id, sep_id, mask_id: the ids of the special tokens. special_ids: all five.

    Special tokens written in the text itself (exactly ``[MASK]``, ``[SEP]``, ...) are kept as single tokens, so
    ``"paris is the [MASK] of france"`` has one ``[MASK]`` token.
    """

    def __init__(self, vocab_path, lower: bool = True) -> None:
        self.vocab_path = pathlib.Path(vocab_path)
        self.vocab = load_vocab(self.vocab_path)
        self.lower = lower
        missing = [t for t in SPECIAL_TOKENS if t not in self.vocab]
        if missing:
            raise ValueError(f"{self.vocab_path}: the vocabulary lacks the special tokens {missing}")
        self.inv_vocab = {i: t for t, i in self.vocab.items()}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.vocab[t] for t in SPECIAL_TOKENS)
        self.special_ids = frozenset((self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id))
        self._special_split = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (no ``[CLS]``/``[SEP]`` added)."""
        tokens = []
        for part in self._special_split.split(text):
            if part in SPECIAL_TOKENS:
                tokens.append(part)
                continue
            for word in basic_tokenize(part, self.lower):
                tokens.extend(wordpiece(word, self.vocab))
        return tokens

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def encode(
        self, text: str, text_pair: str | None = None, max_length: int | None = None, padding: bool = False
    ) -> Encoding:
        """Encode one text, or a pair of texts, as ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``.

        Args:
            text, text_pair: the first and the optional second segment.
            max_length: the longest result, special tokens included. Longer inputs lose tokens at their end. A
                pair that is too long keeps ``min(len(shorter), room // 2)`` tokens of the shorter segment (the
                first one on a tie) and fills the rest of the room with the longer one.
            padding: pad with ``[PAD]`` up to ``max_length`` (attention mask 0, token type 0 there).
        """
        a = self.convert_tokens_to_ids(self.tokenize(text))
        b = None if text_pair is None else self.convert_tokens_to_ids(self.tokenize(text_pair))
        n_special = 2 if b is None else 3
        if max_length is not None:
            if max_length < n_special:
                raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens")
            budget = max_length - n_special
            if b is None:
                a = a[:budget]
            elif len(a) + len(b) > budget:
                # "Longest first": the shorter segment keeps at most half of the budget (the first one on a
                # tie), the longer one gets the rest. (Popping one token at a time from the longer segment, as
                # the original BERT code did, differs by one token on some ties.)
                if len(a) <= len(b):
                    n_a = min(len(a), budget // 2)
                    a, b = a[:n_a], b[: budget - n_a]
                else:
                    n_b = min(len(b), budget // 2)
                    a, b = a[: budget - n_b], b[:n_b]
        ids = [self.cls_id, *a, self.sep_id]
        types = [0] * len(ids)
        if b is not None:
            ids += [*b, self.sep_id]
            types += [1] * (len(b) + 1)
        mask = [1] * len(ids)
        if padding:
            if max_length is None:
                raise ValueError("padding=True needs a max_length to pad to")
            n_pad = max_length - len(ids)
            ids += [self.pad_id] * n_pad
            types += [0] * n_pad
            mask += [0] * n_pad  # padding is not a real token: the model must not attend to it
        return Encoding(ids, types, mask)

    def batch_encode(self, texts, max_length: int | None = None, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """Encode a batch and pad it into rectangular tensors.

        Args:
            texts: a list of strings, or of ``(text, text_pair)`` tuples.
            max_length: truncate every input to this many tokens (special tokens included).
            pad_to: pad to this length; by default to the longest input of the batch.

        Returns:
            ``{"input_ids", "token_type_ids", "attention_mask"}``, each an int64 tensor of shape ``(B, T)``;
            ``attention_mask`` is 1 on real tokens and 0 on padding.
        """
        if isinstance(texts, str):
            raise TypeError("batch_encode expects a list of texts; use encode for a single text")
        encodings = [
            self.encode(t, max_length=max_length) if isinstance(t, str) else self.encode(*t, max_length=max_length)
            for t in texts
        ]
        longest = max((len(e) for e in encodings), default=0)
        T = longest if pad_to is None else pad_to
        if T < longest:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest input ({longest} tokens); set max_length")
        out = {}
        for key, fill in (("input_ids", self.pad_id), ("token_type_ids", 0), ("attention_mask", 0)):
            rows = [getattr(e, key) + [fill] * (T - len(e)) for e in encodings]
            out[key] = torch.tensor(rows, dtype=torch.int64).reshape(len(encodings), T)
        return out

    def convert_ids_to_tokens(self, ids) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.inv_vocab[int(i)] for i in ids]

    def decode(self, ids, skip_special: bool = True) -> str:
        """Turn ids back into text: pieces are joined (``"token", "##ization"`` -> ``"tokenization"``).

        Lower-casing and stripped accents cannot be undone, and punctuation comes back separated by spaces.
        ``[PAD]``, ``[CLS]`` and ``[SEP]`` are left out when ``skip_special``; ``[MASK]`` and ``[UNK]`` never are.
        """
        skip = {"[PAD]", "[CLS]", "[SEP]"} if skip_special else set()
        words: list[str] = []
        for token in self.convert_ids_to_tokens(ids):
            if token in skip:
                continue
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        return " ".join(words)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lower={self.lower})"
