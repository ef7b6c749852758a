"""Tests of lmbook.wordpiece: the basic tokenizer and greedy longest-match WordPiece on small cases, and the whole
tokenizer against transformers.BertTokenizer (offline, on the vocabulary of the offline MiniLM model): single
texts, pairs, truncation and padding, with the attention mask 0 on padding."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network: the model folder is local

import pytest
import torch

from lmbook.hub import offline_model_path
from lmbook.wordpiece import WordPieceTokenizer, basic_tokenize, load_vocab, wordpiece

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "Hello, world!",
    "Café au lait in Zürich costs €4.50.",
    "naïve résumé façade coöperate",
    "Tokenization is un-believably hard!!!",
    "東京は日本の首都です。",
    "北京欢迎你",
    "안녕하세요 세계",
    "ΟΔΟΣ καὶ Ἀθῆναι",  # capital final sigma: lower-cased one character at a time
    "Привет, мир!",
    "x\u0000y\u200bz\tw\nv\r\u00a0u",  # NUL, zero-width space (a control character), tab, newlines, no-break space
    "The year 2024 had 366 days; π≈3.14159.",
    "email me at someone@example.com or visit https://example.org/a?b=c&d=e",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 120 + " short",  # a word longer than 100 characters is [UNK]
    "I don't think it's \"fine\" — really…",
    "emoji 😀🎉 and symbols ™ © ® ° ± ×",
    "[MASK] is the capital of [MASK].",
    "the [mask] token in lower case is ordinary text",
    "İstanbul ǅ ß ẞ ﬁ",
    "It cost $5,000,000 (five million) <really>?",
    "Mixed CASE WoRdS",
    "   leading and trailing spaces   ",
    "",
    "ﾊﾝｶｸ ｶﾀｶﾅ full-width ＡＢＣ１２３",
    "Straße über Öl",
    "Ünïcödé Àccents Ëverywhere",
    "hyphen-ated, slash/separated; colon:semi",
    "¿Qué tal? ¡Bien!",
    "C++ and C# and F* are languages",
    "qwzxv xyzzyplugh blorptastic",  # made-up words: split into pieces or [UNK]
]

PAIRS = [
    ("Is this the question?", "And this the answer."),
    ("", "only the second"),
    ("Straße", "東京"),
    ("one two three four five six seven eight", "nine"),
]


@pytest.fixture(scope="module")
def folder():
    return offline_model_path()


@pytest.fixture(scope="module")
def ours(folder):
    return WordPieceTokenizer(folder / "vocab.txt")


@pytest.fixture(scope="module")
def reference(folder):
    return transformers.BertTokenizer.from_pretrained(str(folder))


# ----- the parts ---------------------------------------------------------------------------------------------


def test_basic_tokenize_cleans_and_splits():
    assert basic_tokenize("Héllo, World!") == ["hello", ",", "world", "!"]
    assert basic_tokenize("Héllo", lower=False) == ["Héllo"]
    assert basic_tokenize("a\u0000b\u200bc\td") == ["abc", "d"]  # control characters removed, tab is a space
    assert basic_tokenize("日本語abc") == ["日", "本", "語", "abc"]  # each ideograph is a word
    assert basic_tokenize("$5+3=8") == ["$", "5", "+", "3", "=", "8"]  # ASCII symbols count as punctuation
    assert basic_tokenize("ΟΔΟΣ") == ["οδοσ"]  # not "οδος": no word-final form
    assert basic_tokenize("   ") == []


def test_wordpiece_is_greedy_longest_match_first():
    vocab = {"a", "ab", "abc", "##c", "##bc", "##d", "un", "##aff", "##able", "##a"}
    assert wordpiece("abcd", vocab) == ["abc", "##d"]  # the longest first piece, not "a" or "ab"
    assert wordpiece("abd", vocab) == ["ab", "##d"]
    assert wordpiece("unaffable", vocab) == ["un", "##aff", "##able"]
    # Greedy, not optimal: "ab" is taken first, and "##cd" does not exist, so the word fails as a whole even
    # though it is not coverable otherwise either; a failure anywhere makes the WHOLE word [UNK].
    assert wordpiece("unx", vocab) == ["[UNK]"]
    assert wordpiece("abx", vocab, unk="?") == ["?"]
    assert wordpiece("a" * 5, {"a", "##a"}, max_chars=4) == ["[UNK]"]
    assert wordpiece("a" * 4, {"a", "##a"}, max_chars=4) == ["a", "##a", "##a", "##a"]
    # Greedy longest-match can miss a split that exists: "a" + "##bcd" is valid here, but "ab" is tried first.
    assert wordpiece("abcd", {"a", "ab", "##bcd", "##x"}) == ["[UNK]"]


def test_load_vocab_and_special_ids(folder, ours):
    vocab = load_vocab(folder / "vocab.txt")
    assert len(vocab) == ours.vocab_size == 30522
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 100, 101, 102, 103)
    assert ours.inv_vocab[vocab["hello"]] == "hello"


def test_vocab_without_special_tokens_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        WordPieceTokenizer(path)


# ----- against transformers.BertTokenizer ---------------------------------------------------------------------


@pytest.mark.parametrize("text", SENTENCES)
def test_single_text_matches_reference(ours, reference, text):
    expected = reference(text)
    got = ours.encode(text)
    assert got.input_ids == expected["input_ids"], (ours.convert_ids_to_tokens(got.input_ids), text)
    assert got.token_type_ids == expected["token_type_ids"]
    assert got.attention_mask == expected["attention_mask"]
    assert ours.tokenize(text) == reference.tokenize(text)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_pairs_match_reference(ours, reference, a, b):
    expected = reference(a, b)
    got = ours.encode(a, b)
    assert got.input_ids == expected["input_ids"]
    assert got.token_type_ids == expected["token_type_ids"]  # 0 for [CLS] a [SEP], 1 for b [SEP]


@pytest.mark.parametrize("max_length", [3, 5, 6, 7, 8, 9, 12])
@pytest.mark.parametrize(("a", "b"), [PAIRS[0], PAIRS[3], ("a b c d e f", "g h i j k l"), ("a b c d e f g", "h i")])
def test_truncation_matches_reference(ours, reference, a, b, max_length):
    expected = reference(a, b, truncation=True, max_length=max_length)
    got = ours.encode(a, b, max_length=max_length)
    assert got.input_ids == expected["input_ids"]
    assert got.token_type_ids == expected["token_type_ids"]
    single = reference(SENTENCES[1], truncation=True, max_length=max_length)["input_ids"]
    assert ours.encode(SENTENCES[1], max_length=max_length).input_ids == single
    with pytest.raises(ValueError, match="special tokens"):
        ours.encode(a, b, max_length=2)


def test_padded_batch_matches_reference_and_masks_padding(ours, reference):
    texts = SENTENCES[:6]
    expected = reference(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    got = ours.batch_encode(texts, max_length=16)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert got[key].dtype == torch.int64
        assert torch.equal(got[key], expected[key]), key
    mask, ids = got["attention_mask"], got["input_ids"]
    assert (mask == 0).any()  # the batch does have padding...
    assert torch.equal(mask == 0, ids == ours.pad_id)  # ...and the mask is 0 exactly there (seed-map mistake 9)
    assert (got["token_type_ids"][mask == 0] == 0).all()


def test_pad_to_and_pairs_in_a_batch(ours, reference):
    expected = reference([a for a, _ in PAIRS], [b for _, b in PAIRS], padding="max_length", max_length=20)
    got = ours.batch_encode(PAIRS, pad_to=20)
    assert got["input_ids"].tolist() == expected["input_ids"]
    assert got["token_type_ids"].tolist() == expected["token_type_ids"]
    assert got["attention_mask"].tolist() == expected["attention_mask"]
    enc = ours.encode(*PAIRS[0], max_length=20, padding=True)
    assert enc.input_ids == expected["input_ids"][0] and enc.attention_mask == expected["attention_mask"][0]
    with pytest.raises(ValueError, match="pad_to"):
        ours.batch_encode(SENTENCES[:3], pad_to=4)
    with pytest.raises(TypeError):
        ours.batch_encode("one text")


def test_mask_token_in_text_and_decode(ours):
    enc = ours.encode("paris is the [MASK] of france.")
    assert enc.input_ids.count(ours.mask_id) == 1
    assert ours.decode(ours.encode("The tokenization works").input_ids) == "the tokenization works"
    assert ours.decode(enc.input_ids, skip_special=False).startswith("[CLS] paris is the [MASK]")
