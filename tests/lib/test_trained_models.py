"""The cached trained models of chapters 5 and 7 (lmbook.cnn.trained_digits_cnn, lmbook.gpt.trained_tiny_gpt):
the second call loads what the first stored, and a loaded model equals one trained again from scratch."""

import torch

from lmbook.cnn import trained_digits_cnn
from lmbook.gpt import trained_tiny_gpt


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pairs = zip(a.state_dict().items(), b.state_dict().items(), strict=True)
    return all(na == nb and torch.equal(ta, tb) for (na, ta), (nb, tb) in pairs)


def test_trained_digits_cnn_loaded_equals_trained(tmp_path):
    trained, info1 = trained_digits_cnn(folder=tmp_path / "a", epochs=2)
    loaded, info2 = trained_digits_cnn(folder=tmp_path / "a", epochs=2)
    fresh, info3 = trained_digits_cnn(folder=tmp_path / "b", epochs=2)  # another folder: trained again
    assert (info1["cached"], info2["cached"], info3["cached"]) == (False, True, False)
    assert _same_weights(trained, loaded) and _same_weights(trained, fresh)
    assert info1["test_accuracy"] == info2["test_accuracy"] == info3["test_accuracy"] > 0.5
    assert info2["split"].X_test.shape[1:] == (1, 8, 8) and not loaded.training
    x = torch.as_tensor(info2["split"].X_test[:4])
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))


def test_trained_tiny_gpt_loaded_equals_trained(tmp_path):
    trained, tok1, info1 = trained_tiny_gpt(folder=tmp_path / "a", steps=20)
    loaded, tok2, info2 = trained_tiny_gpt(folder=tmp_path / "a", steps=20)
    fresh, _, info3 = trained_tiny_gpt(folder=tmp_path / "b", steps=20)
    assert (info1["cached"], info2["cached"], info3["cached"]) == (False, True, False)
    assert _same_weights(trained, loaded) and _same_weights(trained, fresh)
    assert tok1.vocab == tok2.vocab and info1["val_loss"] == info2["val_loss"] == info3["val_loss"]
    assert info2["val_loss"] < torch.log(torch.tensor(float(tok2.vocab_size))).item()  # it learned something
    assert len(info2["train_ids"]) + len(info2["val_ids"]) == len(info2["text"]) and not loaded.training
