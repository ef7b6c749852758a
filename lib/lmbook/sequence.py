"""Recurrent networks for whole sequences: a word vocabulary, padded batches, a classifier and a character LM.

Introduced in chapter 6, Recurrent networks (sections 4 and 5). Sentences have different lengths, but a batch is
one rectangular tensor, so shorter sentences are **padded** with a reserved id (0) up to the longest one. A
recurrent network then reads the padding too, unless told not to; the step that summarises a sentence is its
**last real step** ``lengths[b] - 1``, not the last column ``T - 1`` of the batch. Two correct ways:

- gather the output at the last real step of each row (:func:`last_real_step`), or
- pack the batch (``torch.nn.utils.rnn.pack_padded_sequence``), so the network never sees the padding and its
  final state ``h_n`` is the state after each row's last real token.

The book's sources read ``x[:, -1, :]``, the last padded step, which for a short sentence is the state after
several padding tokens; :class:`SequenceClassifier` keeps that readout as ``"last_padded"`` so the chapter can
measure what it costs.

- :class:`Vocabulary`: word ids built from training texts (words from :func:`lmbook.wordpiece.basic_tokenize`,
  lower-cased; pad id 0, unknown id 1);
- :func:`pad_batch`: lists of ids -> ``(ids (N, T), lengths (N,))``;
- :func:`last_real_step`: ``(B, T, H)`` outputs and lengths -> ``(B, H)``;
- :class:`SequenceClassifier`: embedding -> ``torch.nn`` RNN, GRU or LSTM -> readout -> linear, trained with
  :func:`lmbook.training.fit_classifier` on ``(ids, lengths)``;
- :class:`CharLSTM`: an LSTM language model, ``(B, T)`` ids -> ``(B, T, V)`` logits, trained with
  :func:`lmbook.language_model.train_lm` like chapter 7's GPT, writing text with :meth:`CharLSTM.generate`.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from lmbook.loop import evaluation_mode
from lmbook.sampling import check_sampling, sample_next
from lmbook.seeding import private_seed
from lmbook.testing import check_choice, check_shape
from lmbook.wordpiece import basic_tokenize

PAD_ID = 0
UNK_ID = 1
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
READOUTS = ("last_real", "packed", "last_padded")


# ----- words to ids -------------------------------------------------------------------------------------------


class Vocabulary:
    """Word-level ids for a set of training texts: ``"<pad>"`` is 0, ``"<unk>"`` is 1, then the words.

    Args:
        texts: the training texts; each is cut into lower-cased words and punctuation marks by
            :func:`lmbook.wordpiece.basic_tokenize` (``"Not bad!"`` -> ``["not", "bad", "!"]``).
        min_count: a word gets its own id only if it occurs at least this often in ``texts``; rarer words, and
            words never seen, become ``"<unk>"``.

    Attributes:
        words: ``words[i]`` is the word of id ``i``; the words are in order of decreasing count, ties
            alphabetical, so the vocabulary does not depend on the order of the texts.
        vocab_size: ``len(words)``, including the two special ids.

    Example:
        >>> vocab = Vocabulary(["A good film.", "A bad film."])
        >>> vocab.encode(["a good day"])
        [[3, 6, 1]]
    """

    PAD = "<pad>"
    UNK = "<unk>"

    def __init__(self, texts, min_count: int = 1) -> None:
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, got one string")
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts = Counter(word for text in texts for word in self.tokenize(text))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        self.words = [self.PAD, self.UNK, *kept]
        self.min_count = min_count
        self._ids = {word: i for i, word in enumerate(self.words)}

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """The words of ``text``, lower-cased, punctuation marks split off."""
        return basic_tokenize(text, lower=True)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, texts) -> list[list[int]]:
        """The ids of each text: a list of ``N`` lists (of different lengths); unknown words get id 1."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap one text in a list: encode([text])")
        return [[self._ids.get(word, UNK_ID) for word in self.tokenize(text)] for text in texts]

    def decode(self, ids) -> str:
        """The words of ``ids`` joined by spaces, padding left out."""
        return " ".join(self.words[int(i)] for i in ids if int(i) != PAD_ID)

    def __repr__(self) -> str:
        return f"Vocabulary(vocab_size={self.vocab_size}, min_count={self.min_count})"


def pad_batch(sequences, pad_id: int = PAD_ID, total_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Put sequences of ids of different lengths into one rectangle, padded at the end.

    Args:
        sequences: ``N`` non-empty sequences of ids (lists or 1-d tensors).
        pad_id: the id written after each sequence's end.
        total_length: the width ``T`` of the result; None takes the longest sequence. A larger value adds more
            padding (chapter 6 uses it to show a readout that reads padding).

    Returns:
        ``ids``: int64 ``(N, T)``, row ``n`` holding sequence ``n`` then ``pad_id``; ``lengths``: int64 ``(N,)``.
    """
    rows = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in sequences]
    if not rows:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    if (lengths == 0).any():
        raise ValueError(f"sequence {int((lengths == 0).nonzero()[0])} is empty; every sequence needs a token")
    T = int(lengths.max()) if total_length is None else int(total_length)
    if T < int(lengths.max()):
        raise ValueError(f"total_length={T} is shorter than the longest sequence ({int(lengths.max())} ids)")
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = row
    return ids, lengths


def _check_lengths(lengths: torch.Tensor, B: int, T: int) -> None:
    check_shape(lengths, (B,), "lengths")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ValueError(
            f"lengths must be between 1 and T={T} (the padded width), got values from {int(lengths.min())} "
            f"to {int(lengths.max())}"
        )


def last_real_step(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at each row's last real step: ``outputs[b, lengths[b] - 1]``, ``(B, T, H)`` -> ``(B, H)``.

    Args:
        outputs: a batch-first recurrent network's outputs over a padded batch, ``(B, T, H)``.
        lengths: the number of real (not padding) steps of each row, ``(B,)``, each from 1 to ``T``.
    """
    B, T, H = check_shape(outputs, ("B", "T", "H"), "outputs").shape
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=outputs.device)
    _check_lengths(lengths, B, T)
    index = (lengths - 1).view(B, 1, 1).expand(B, 1, H)  # (B, 1, H): the step to take, repeated along H
    return outputs.gather(1, index).squeeze(1)  # (B, 1, H) -> (B, H)


# ----- a classifier -------------------------------------------------------------------------------------------


class SequenceClassifier(nn.Module):
    """Embedding -> recurrent layers -> one vector per sequence -> linear: ``(ids, lengths)`` -> logits ``(B, K)``.

    Args:
        vocab_size: ``V``, ids from 0 to ``V - 1``. num_classes: ``K``.
        d_model: embedding width. d_hidden: the recurrent state's size. num_layers: stacked recurrent layers.
        cell: ``"rnn"`` (tanh), ``"gru"`` or ``"lstm"``: ``torch.nn.RNN``, ``GRU`` or ``LSTM``, batch-first.
        readout: which state summarises a sequence:
            ``"last_real"``: the last layer's output at step ``lengths[b] - 1`` (:func:`last_real_step`);
            ``"packed"``: the final state ``h_n`` of the last layer after reading a packed batch
            (``pack_padded_sequence``), which never contains the padding; the same vector as ``"last_real"``;
            ``"last_padded"``: the output at the last column, ``x[:, -1, :]``, as the book's sources do; for a
            row shorter than ``T`` that is the state after reading padding (a mistake, kept to measure it).
        pad_id: the padding id; its embedding is fixed at zero (``padding_idx``).
        seed: seeds the initial weights (a private copy of torch's random state).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int = 32,
        d_hidden: int = 64,
        cell: str = "rnn",
        readout: str = "last_real",
        num_layers: int = 1,
        pad_id: int = PAD_ID,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        check_choice(cell, CELLS, "cell")
        check_choice(readout, READOUTS, "readout")
        for name, value in (("vocab_size", vocab_size), ("num_classes", num_classes), ("d_model", d_model),
                            ("d_hidden", d_hidden), ("num_layers", num_layers)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.cell, self.readout, self.pad_id = cell, readout, pad_id
        with private_seed(seed):
            self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
            self.rnn = CELLS[cell](d_model, d_hidden, num_layers=num_layers, batch_first=True)
            self.head = nn.Linear(d_hidden, num_classes)

    @classmethod
    def from_embeddings(
        cls, weights: torch.Tensor, num_classes: int, freeze: bool = True, **kwargs
    ) -> SequenceClassifier:
        """A classifier whose embedding table is ``weights`` ``(V, d_model)``, e.g. a pre-trained model's.

        Args:
            weights: one row per id; ``vocab_size`` and ``d_model`` are taken from its shape. The row of
                ``pad_id`` is set to zero, as in every :class:`SequenceClassifier`.
            num_classes: ``K``. freeze: keep the table fixed while training (``requires_grad=False``; the
                optimisers of :mod:`lmbook.loop` skip it).
            kwargs: the other arguments of :class:`SequenceClassifier` (``d_hidden``, ``cell``, ``readout``, ...).
        """
        V, d_model = check_shape(weights, ("V", "d_model"), "weights").shape
        model = cls(V, num_classes, d_model=d_model, **kwargs)
        with torch.no_grad():
            model.embedding.weight.copy_(weights)
            model.embedding.weight[model.pad_id] = 0.0
        model.embedding.weight.requires_grad_(not freeze)
        return model

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The vector that summarises each sequence, ``(B, d_hidden)``, chosen by ``readout``."""
        B, T = check_shape(ids, ("B", "T"), "ids").shape
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        _check_lengths(lengths, B, T)
        x = self.embedding(ids)  # (B, T) -> (B, T, d_model)
        if self.readout == "packed":
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h_n = self.rnn(packed)  # h_n: (num_layers, B, d_hidden), rows back in the batch's order
            if self.cell == "lstm":
                h_n = h_n[0]  # an LSTM returns (h_n, c_n)
            return h_n[-1]  # the last layer's state after each row's last real step
        outputs, _ = self.rnn(x)  # (B, T, d_hidden): the last layer's output at every step
        if self.readout == "last_real":
            return last_real_step(outputs, lengths)
        return outputs[:, -1, :]  # "last_padded": the last column, padding for the shorter rows

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``ids`` ``(B, T)`` padded with ``pad_id`` and ``lengths`` ``(B,)`` -> logits ``(B, num_classes)``."""
        return self.head(self.features(ids, lengths))


# ----- a character language model -----------------------------------------------------------------------------


class CharLSTM(nn.Module):
    """An LSTM language model: ``(B, T)`` token ids -> ``(B, T, V)`` next-token logits.

    Embedding -> ``num_layers`` LSTM layers (batch-first) -> dropout -> linear head. Trained on windows of a long
    token sequence by :func:`lmbook.language_model.train_lm`, like chapter 7's GPT (give the window length in
    the config, ``LMTrainConfig(window=...)``: an LSTM has no maximum length). Unlike the GPT it carries a state
    from step to step, so :meth:`generate` reads each new token once instead of re-reading a window.

    Args:
        vocab_size: ``V``. d_model: embedding width. d_hidden: the LSTM state's size. num_layers: stacked layers.
        dropout: between LSTM layers and before the head, while training.
        seed: seeds the initial weights (a private copy of torch's random state).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        d_hidden: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size = vocab_size
        with private_seed(seed):
            self.embedding = nn.Embedding(vocab_size, d_model)
            self.lstm = nn.LSTM(d_model, d_hidden, num_layers=num_layers, batch_first=True,
                                dropout=dropout if num_layers > 1 else 0.0)  # fmt: skip
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(d_hidden, vocab_size)

    def step(self, idx: torch.Tensor, state=None):
        """Read ``idx`` ``(B, T)`` from ``state`` (None: zeros) -> ``(logits (B, T, V), state after the last step)``.

        The state is the LSTM's ``(h, c)``, each ``(num_layers, B, d_hidden)``; passing it back in continues the
        same sequences, so reading a text in two calls gives the same logits as reading it in one.
        """
        check_shape(idx, ("B", "T"), "idx")
        outputs, state = self.lstm(self.embedding(idx), state)  # (B, T, d_hidden)
        return self.head(self.drop(outputs)), state

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` ``(B, T)`` -> logits ``(B, T, V)``, starting from a zero state."""
        return self.step(idx)[0]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue each row of ``idx`` ``(B, T)`` by ``max_new_tokens`` sampled tokens -> ``(B, T + new)``.

        The prompt is read once; then each drawn token is fed back with the carried state. Each token is drawn
        by :func:`lmbook.sampling.sample_next` (``temperature``, ``top_k``, ``generator``), in evaluation mode.
        """
        check_shape(idx, ("B", "T"), "idx")
        check_sampling(temperature, top_k)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if idx.shape[1] < 1:
            raise ValueError("generate needs a prompt of at least one token per row")
        out = [idx]
        with evaluation_mode(self):
            logits, state = self.step(idx)
            for i in range(max_new_tokens):
                nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B, 1)
                out.append(nxt)
                if i + 1 < max_new_tokens:
                    logits, state = self.step(nxt, state)  # one step from the carried state
        return torch.cat(out, dim=1)
