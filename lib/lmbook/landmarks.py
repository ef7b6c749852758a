"""Landmark models, 1998-2024: their size, their training data and their training compute, as their papers state.

Introduced in chapter 1, What makes a model large. :data:`LANDMARKS` is a short table of models that changed
what people meant by a "large" model, from LeNet-5 (60 thousand parameters) to the language models of 2024
(hundreds of billions). Every number is either stated by the cited paper (the ``note`` names where) or computed
here from stated numbers:

- parameters are counted with :func:`lmbook.transformer.count_parameters` where the book has the model's
  configuration (BERT-large, GPT-2, GPT-3: :data:`lmbook.cost.PUBLISHED_RUNS` and
  :data:`lmbook.transformer.KNOWN_MODELS`), so no size is typed twice; elsewhere they are the paper's figure;
- training compute is the paper's own figure where it states one (``flops_source="paper"``), otherwise
  ``6 N D`` from :func:`lmbook.cost.training_flops` (``flops_source="6ND"``), and None where neither applies
  (the image models: their data is counted in images, not tokens).

:func:`growth_fit` fits a straight line to ``log10(value)`` against the year, which turns the table into a growth
rate ("parameters grew x-fold per year, doubling every n months"), and :func:`as_markdown_table` renders the
table for a page, with a ``{cite:p}`` role per row.

A table of landmarks is a selection, not a sample: the fitted rates describe the models someone chose to list
(the largest of their day, mostly), not the field's typical model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmbook.cost import PUBLISHED_RUNS, training_flops
from lmbook.testing import check_choice
from lmbook.transformer import KNOWN_MODELS, count_parameters

KINDS = ("cnn", "rnn", "encoder", "decoder", "encoder-decoder", "moe")
"""Architectures in the table: convolutional network, recurrent network, transformer encoder (BERT-like), decoder
(GPT-like), encoder-decoder (the original transformer, T5), and mixture of experts (a decoder whose feed-forward
layers are many experts, of which each token uses a few)."""

FIELDS = ("params", "tokens", "samples", "flops", "active_params")
"""Numeric fields of :class:`Landmark` that :func:`growth_fit` can fit."""

LARGE_THRESHOLD = 100e6
"""The "100M+ parameters" that many introductions give as the line above which a model is "large"."""


@dataclass(frozen=True)
class Landmark:
    """One landmark model.

    Attributes:
        name: the model as its paper names it. year: the year it was first made public (its arXiv preprint, or
            the paper when there was none). kind: one of :data:`KINDS`.
        params: number of parameters ``N`` (for a mixture of experts, all of them; see ``active_params``).
        tokens: training tokens ``D`` the model processed, or None (image models; papers that state none).
        flops: training compute in FLOPs, or None. flops_source: ``"paper"`` (stated by the cited work),
            ``"6ND"`` (computed here with :func:`lmbook.cost.training_flops`), ``"estimate:<bib key>"`` (from a
            cited compute survey), or ``""`` when ``flops`` is None.
        cite: the bibliography key of the paper (``lib/lmbook/references.bib``). note: where in the paper the
            numbers are, and how derived numbers were derived.
        samples: for models not trained on tokens, the training examples: images (or sentence pairs) in the
            training set, as the paper states; ``samples_unit`` names them and ``data_note`` says how often they
            were seen.
        active_params: for a mixture of experts, the parameters each token uses (what its compute depends on).
    """

    name: str
    year: int
    kind: str
    params: float
    tokens: float | None
    flops: float | None
    flops_source: str
    cite: str
    note: str
    samples: float | None = None
    samples_unit: str = ""
    data_note: str = ""
    active_params: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.kind, KINDS, "kind")
        for field in FIELDS:
            value = getattr(self, field)
            if field == "params" or value is not None:
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                    raise ValueError(f"{self.name}: {field} must be a positive number, got {value!r}")
        if self.flops is None and self.flops_source:
            raise ValueError(f"{self.name}: flops is None, so flops_source must be '', got {self.flops_source!r}")
        if self.flops is not None and not (
            self.flops_source in ("paper", "6ND") or self.flops_source.startswith("estimate:")
        ):
            raise ValueError(
                f"{self.name}: flops_source must be 'paper', '6ND' or 'estimate:<key>', got {self.flops_source!r}"
            )

    @property
    def is_large(self) -> bool:
        """Whether the model has at least :data:`LARGE_THRESHOLD` (100M) parameters."""
        return self.params >= LARGE_THRESHOLD


def _counted(run_name: str) -> float:
    """Parameters of a published run, counted from its configuration by :attr:`lmbook.cost.PublishedRun.n_params`."""
    return float(PUBLISHED_RUNS[run_name].n_params)


# LeNet-5's trainable parameters layer by layer, as section II.B of LeCun et al. (1998) states them (C5 as
# "trainable connections", which for a fully connected layer are its parameters); the output layer's RBF
# centres are fixed, not trained.
_LENET5_LAYER_PARAMS = {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164}

_GPT3, _BERT, _CHINCHILLA = PUBLISHED_RUNS["GPT-3 175B"], PUBLISHED_RUNS["BERT-large"], PUBLISHED_RUNS["Chinchilla 70B"]
_GPT2_XL = KNOWN_MODELS["GPT-2 XL"]
_T5_TOKENS = 1_000_000 * 2**11 * 512  # section 3.7: 1M steps x 2^11 sequences x 512 tokens, "about 1 trillion"


def _six_nd(params: float, tokens: float) -> float:
    return training_flops(params, tokens)


LANDMARKS: tuple[Landmark, ...] = (
    Landmark(
        "LeNet-5", 1998, "cnn",
        params=float(sum(_LENET5_LAYER_PARAMS.values())), tokens=None, flops=None, flops_source="",
        cite="lecun1998gradient",
        note="60,000 trainable parameters: the sum of the per-layer counts of section II.B",
        samples=60_000, samples_unit="images",
        data_note="the MNIST training set of 60,000 handwritten digits, seen 20 times (section III)",
    ),
    Landmark(
        "AlexNet", 2012, "cnn",
        params=60e6, tokens=None, flops=None, flops_source="",
        cite="krizhevsky2012imagenet",
        note="60 million parameters (abstract and section 4)",
        samples=1.2e6, samples_unit="images",
        data_note="about 1.2 million ImageNet (ILSVRC) training images, seen about 90 times (section 5)",
    ),
    Landmark(
        "VGG-16", 2014, "cnn",
        params=138e6, tokens=None, flops=None, flops_source="",
        cite="simonyan2015very",
        note="configuration D, 138 million parameters (Table 2)",
        samples=1.3e6, samples_unit="images",
        data_note="the 1.3 million ILSVRC-2012 training images (section 4)",
    ),
    Landmark(
        "Seq2seq LSTM", 2014, "rnn",
        params=384e6, tokens=None, flops=None, flops_source="",
        cite="sutskever2014sequence",
        note="a 4-layer LSTM encoder-decoder with 384M parameters (section 3.4)",
        samples=12e6, samples_unit="sentence pairs",
        data_note="12 million English-French sentence pairs (348M French and 304M English words), 7.5 epochs",
    ),
    Landmark(
        "Transformer (big)", 2017, "encoder-decoder",
        params=213e6, tokens=None, flops=2.3e19, flops_source="paper",
        cite="vaswani2017attention",
        note="213M parameters (Table 3); training cost 2.3e19 FLOPs on English-German (Table 2)",
        data_note="WMT 2014 English-German, about 4.5 million sentence pairs; tokens processed are not stated",
    ),
    Landmark(
        "BERT-large", 2018, "encoder",
        params=_counted("BERT-large"), tokens=_BERT.n_tokens, flops=_BERT.flops, flops_source="6ND",
        cite="devlin2019bert",
        note="the paper states 340M parameters; counted from the configuration (24 layers, width 1024) without "
        "the pre-training heads. Tokens: " + _BERT.tokens_note + " (section A.2)",
    ),
    Landmark(
        "GPT-2", 2019, "decoder",
        params=float(count_parameters(_GPT2_XL.config, _GPT2_XL.kind)["total"]), tokens=None, flops=None,
        flops_source="", cite="radford2019language",
        note="the largest model, 48 layers of width 1600; its Table 2 states 1542M parameters, the released "
        "configuration counts 1.56B. Trained on WebText (about 8 million documents, 40 GB of text); training "
        "tokens are not stated",
    ),
    Landmark(
        "T5-11B", 2019, "encoder-decoder",
        params=11e9, tokens=float(_T5_TOKENS), flops=None, flops_source="",
        cite="raffel2020exploring",
        note="about 11 billion parameters (section 3.7); 1M steps of 2^11 sequences of 512 tokens, 'about 1 "
        "trillion' tokens. No FLOPs: 6ND overcounts an encoder-decoder, whose tokens each pass through only "
        "one of its two halves",
    ),
    Landmark(
        "GPT-3", 2020, "decoder",
        params=_counted("GPT-3 175B"), tokens=_GPT3.n_tokens, flops=_GPT3.published_flops, flops_source="paper",
        cite="brown2020language",
        note="175B parameters (Table 2.1; counted from its configuration here), 300 billion training tokens, "
        "3.14e23 FLOPs (Table D.1)",
    ),
    Landmark(
        "Gopher", 2021, "decoder",
        params=280e9, tokens=300e9, flops=_six_nd(280e9, 300e9), flops_source="6ND",
        cite="rae2021scaling",
        note="280 billion parameters trained on 300 billion tokens",
    ),
    Landmark(
        "Chinchilla", 2022, "decoder",
        params=_counted("Chinchilla 70B"), tokens=_CHINCHILLA.n_tokens, flops=_CHINCHILLA.flops,
        flops_source="6ND", cite="hoffmann2022training",
        note="70 billion parameters and 1.4 trillion tokens (Table 1); its abstract: the compute budget of "
        "Gopher, with a 4 times smaller model and 4 times more data",
    ),
    Landmark(
        "PaLM", 2022, "decoder",
        params=540e9, tokens=780e9, flops=_six_nd(540e9, 780e9), flops_source="6ND",
        cite="chowdhery2022palm",
        note="540 billion parameters (abstract) trained on 780 billion tokens (section 3, training data)",
    ),
    Landmark(
        "LLaMA-65B", 2023, "decoder",
        params=65.2e9, tokens=1.4e12, flops=_six_nd(65.2e9, 1.4e12), flops_source="6ND",
        cite="touvron2023llama",
        note="65.2B parameters and 1.4T tokens (Table 2)",
    ),
    Landmark(
        "Llama 2 70B", 2023, "decoder",
        params=70e9, tokens=2.0e12, flops=_six_nd(70e9, 2.0e12), flops_source="6ND",
        cite="touvron2023llama2",
        note="70B parameters and 2.0T tokens (Table 1)",
    ),
    Landmark(
        "Llama 3 405B", 2024, "decoder",
        params=405e9, tokens=15.6e12, flops=3.8e25, flops_source="paper",
        cite="dubey2024llama",
        note="405B parameters trained on 15.6T tokens with 3.8e25 FLOPs (section 1 and section 3)",
    ),
    Landmark(
        "DeepSeek-V3", 2024, "moe",
        params=671e9, tokens=14.8e12, flops=_six_nd(37e9, 14.8e12), flops_source="6ND",
        cite="deepseekai2024deepseekv3",
        note="671B parameters of which 37B are active for each token, 14.8T training tokens (abstract); "
        "6ND uses the 37B active parameters",
        active_params=37e9,
    ),
)  # fmt: skip
"""The landmark models, oldest first. See :class:`Landmark` for what each field holds."""


# ----- growth rates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrowthFit:
    """A straight line ``log10(value) = intercept + slope * year``, fitted by least squares.

    Attributes:
        field: the fitted field. slope: orders of magnitude (factors of 10) per year. intercept: ``log10`` of the
            value the line gives at year 0. r_squared: the fraction of the variance of ``log10(value)`` the line
            explains. rows: the landmarks used, oldest first.
    """

    field: str
    slope: float
    intercept: float
    r_squared: float
    rows: tuple[Landmark, ...]

    @property
    def factor_per_year(self) -> float:
        """How many times larger the value gets each year: ``10 ** slope``."""
        return 10.0**self.slope

    @property
    def doubling_months(self) -> float:
        """Months for the value to double: ``12 log10(2) / slope`` (infinite when the line does not rise)."""
        return 12.0 * math.log10(2.0) / self.slope if self.slope > 0 else math.inf

    def predict(self, year: float) -> float:
        """The value the line gives for ``year``."""
        return 10.0 ** (self.intercept + self.slope * year)


def growth_fit(landmarks: Sequence[Landmark], field: str = "params", since: int | None = None) -> GrowthFit:
    """Fit ``log10(field)`` against the year over the landmarks that have a value (from ``since`` on, if given).

    Args:
        landmarks: rows such as :data:`LANDMARKS`. field: one of :data:`FIELDS`. since: first year to include.

    Raises:
        ValueError: on an unknown field, or when fewer than two rows (or only one distinct year) have a value.
    """
    check_choice(field, FIELDS, "field")
    rows = tuple(
        sorted(
            (lm for lm in landmarks if getattr(lm, field) is not None and (since is None or lm.year >= since)),
            key=lambda lm: lm.year,
        )
    )
    span = "" if since is None else f" from {since} on"
    if len(rows) < 2:
        raise ValueError(f"growth_fit needs at least two rows with a value of {field!r}{span}, got {len(rows)}")
    years = np.array([lm.year for lm in rows], dtype=np.float64)
    if np.ptp(years) == 0:
        raise ValueError(f"growth_fit needs rows from at least two years for {field!r}{span}, all are {years[0]:.0f}")
    y = np.log10(np.array([getattr(lm, field) for lm in rows], dtype=np.float64))
    x = years - years.mean()  # centred: the same slope, a better-conditioned sum
    slope = float(np.sum(x * (y - y.mean())) / np.sum(x * x))
    intercept = float(y.mean() - slope * years.mean())
    residual = y - (intercept + slope * years)
    total = np.sum((y - y.mean()) ** 2)
    r_squared = float(1.0 - np.sum(residual**2) / total) if total > 0 else 1.0
    return GrowthFit(field, slope, intercept, r_squared, rows)


# ----- the table for the page -----------------------------------------------------------------------------------


def format_count(x: float) -> str:
    """A count in the book's short form: 60K, 1.2M, 138M, 1.56B, 14.8T (three significant digits at most)."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= size:
            return f"{x / size:.3g}{suffix}"
    return f"{x:.3g}"


def as_markdown_table(landmarks: Sequence[Landmark]) -> str:
    """The landmarks as a Markdown table, one row each, with a ``{cite:p}`` role in the source column.

    Columns: model, year, kind, parameters, training data (tokens, or images / sentence pairs), training compute
    in FLOPs with how it was obtained (``paper`` or ``6ND``), source.
    """
    lines = [
        "| model | year | kind | parameters | training data | compute (FLOPs) | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for lm in landmarks:
        params = format_count(lm.params)
        if lm.active_params is not None:
            params += f" ({format_count(lm.active_params)} active)"
        if lm.tokens is not None:
            data = f"{format_count(lm.tokens)} tokens"
        elif lm.samples is not None:
            data = f"{format_count(lm.samples)} {lm.samples_unit}"
        else:
            data = "not stated"
        flops = "-" if lm.flops is None else f"{lm.flops:.1e} ({lm.flops_source})".replace("e+", "e")
        lines.append(f"| {lm.name} | {lm.year} | {lm.kind} | {params} | {data} | {flops} | {{cite:p}}`{lm.cite}` |")
    return "\n".join(lines)
