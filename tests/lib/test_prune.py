"""lmbook.prune against torch.nn.utils.prune: the same masks, the same weights, and smaller matrices that compute
the same outputs."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from lmbook.prune import (
    global_magnitude_masks,
    magnitude_mask,
    make_permanent,
    prunable_layers,
    prune_model,
    shrink_feedforward,
    sparsity_of,
    structured_mask,
)
from lmbook.transformer import FeedForward


def _linear(out_features=12, in_features=10, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


class _Encoder(nn.Module):
    """A stand-in for BERT's layout: an embedding, an ``encoder`` of feed-forward blocks, a head."""

    def __init__(self, C=8, d_ff=16, n_layers=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(20, C)
        self.encoder = nn.ModuleList(FeedForward(C, d_ff) for _ in range(n_layers))
        self.head = nn.Linear(C, 2)

    def forward(self, ids):
        x = self.embed(ids)
        for ffn in self.encoder:
            x = x + ffn(x)
        return self.head(x.mean(dim=1))


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.77, 0.9, 1.0])
def test_magnitude_mask_matches_l1_unstructured(sparsity):
    layer = _linear()
    ours = magnitude_mask(layer.weight, sparsity)
    expected_weight = layer.weight.detach() * ours
    torch_prune.l1_unstructured(layer, "weight", amount=sparsity)
    assert ours.dtype == torch.bool and ours.shape == layer.weight.shape
    assert torch.equal(ours, layer.weight_mask.bool())
    assert torch.equal(expected_weight, layer.weight)
    assert (~ours).sum() == round(sparsity * ours.numel())


def test_magnitude_mask_uses_magnitude_not_sign():
    w = torch.tensor([-5.0, 0.1, 3.0, -0.2, 0.05, -4.0])
    keep = magnitude_mask(w, 0.5)
    assert keep.tolist() == [True, False, True, False, False, True]  # -5 and -4 stay: large in magnitude


def test_magnitude_mask_ties_remove_the_right_count_and_only_tied_weights():
    w = torch.tensor([[1.0, -1.0, 1.0, 2.0], [-1.0, 3.0, 1.0, 0.5]])
    keep = magnitude_mask(w, 0.5)  # remove 4: 0.5 and three of the five weights of magnitude 1
    assert (~keep).sum() == 4
    assert not keep[1, 3] and keep[0, 3] and keep[1, 1]
    assert keep.flatten().tolist() == [False, False, False, True, True, True, True, False]  # lower index first
    layer = nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(w)
    torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    theirs = layer.weight_mask.bool()
    assert (~theirs).sum() == 4 and not theirs[1, 3]
    assert ((theirs != keep) <= (w.abs() == 1)).all()  # any difference is among the tied weights


def test_global_masks_match_global_unstructured():
    layers = [_linear(12, 10, seed=1), _linear(6, 12, seed=2), _linear(3, 6, seed=3)]
    with torch.no_grad():
        layers[1].weight.mul_(0.3)  # a layer of small weights loses more under one threshold
    ours = global_magnitude_masks([layer.weight for layer in layers], 0.6)
    torch_prune.global_unstructured([(layer, "weight") for layer in layers], torch_prune.L1Unstructured, amount=0.6)
    for layer, mask in zip(layers, ours, strict=True):
        assert torch.equal(mask, layer.weight_mask.bool())
    assert sparsity_of(ours[1].float()) > 0.6 > sparsity_of(ours[0].float())


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("dim", [0, 1])
def test_structured_mask_matches_ln_structured(sparsity, dim):
    layer = _linear(16, 10)
    ours = structured_mask(layer.weight, sparsity, dim=dim)
    torch_prune.ln_structured(layer, "weight", amount=sparsity, n=2, dim=dim)
    assert torch.equal(ours, layer.weight_mask.bool())


def test_structured_mask_on_a_convolution_removes_whole_filters():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    ours = structured_mask(conv.weight, 0.5)
    torch_prune.ln_structured(conv, "weight", amount=0.5, n=2, dim=0)
    assert torch.equal(ours, conv.weight_mask.bool())
    assert ours.flatten(1).all(dim=1).sum() == 4 and (~ours).flatten(1).all(dim=1).sum() == 4


def test_bad_arguments_are_named():
    w = torch.randn(4, 4)
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="sparsity"):
            magnitude_mask(w, bad)
    with pytest.raises(ValueError, match="dim"):
        structured_mask(w, 0.5, dim=2)
    with pytest.raises(ValueError, match="scope"):
        prune_model(_Encoder(), 0.5, scope="everywhere")
    with pytest.raises(ValueError, match="structured"):
        prune_model(_Encoder(), 0.5, structured=True, scope="global")
    with pytest.raises(ValueError, match="layer"):
        prune_model(_Encoder(), 0.5, layers=["embed"])
    with pytest.raises(TypeError, match="nn.Module"):
        sparsity_of([1.0, 0.0])


def test_prunable_layers_skip_embeddings_and_head():
    model = _Encoder()
    assert prunable_layers(model) == ["encoder.0.fc1", "encoder.0.fc2", "encoder.1.fc1", "encoder.1.fc2"]
    assert prunable_layers(model, structured=True) == ["encoder.0.fc1", "encoder.1.fc1"]
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    assert prunable_layers(plain) == ["0", "2"]  # everything but the output layer


def test_prune_model_copies_and_prunes_each_layer():
    model = _Encoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_model(model, 0.5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"prune_model changed the original's {k}"
    for name in prunable_layers(model):
        assert sparsity_of(pruned.get_submodule(name).weight) == 0.5
    assert torch.equal(pruned.embed.weight, model.embed.weight) and torch.equal(pruned.head.weight, model.head.weight)
    assert sparsity_of(pruned, layers=prunable_layers(model)) == 0.5
    assert 0 < sparsity_of(pruned) < 0.5  # the head counts too, unpruned


def test_prune_model_global_scope_equals_torch():
    model = _Encoder()
    pruned = prune_model(model, 0.7, scope="global")
    params = [(model.get_submodule(name), "weight") for name in prunable_layers(model)]
    torch_prune.global_unstructured(params, torch_prune.L1Unstructured, amount=0.7)
    for module, _ in params:
        name = next(n for n, m in model.named_modules() if m is module)
        assert torch.equal(pruned.get_submodule(name).weight, module.weight)


def test_structured_pruning_shrinks_to_the_same_outputs():
    model = _Encoder(d_ff=16).double()
    pruned = prune_model(model, 0.25, structured=True)
    small = shrink_feedforward(pruned)
    ids = torch.randint(0, 20, (3, 5))
    for name in ("encoder.0", "encoder.1"):
        assert pruned.get_submodule(name).fc1.weight.shape == (16, 8)
        assert small.get_submodule(name).fc1.weight.shape == (12, 8)
        assert small.get_submodule(name).fc2.weight.shape == (8, 12)
        assert (pruned.get_submodule(name).fc1.bias == 0).sum() == 4  # the biases of removed neurons went too
    torch.testing.assert_close(small(ids), pruned(ids), rtol=0, atol=1e-12)
    assert not torch.allclose(pruned(ids), model(ids))
    unpruned = shrink_feedforward(model)  # nothing to remove: the same shapes
    assert unpruned.encoder[0].fc1.weight.shape == (16, 8)


def test_shrink_keeps_a_neuron_whose_bias_is_alive():
    model = _Encoder(d_ff=4)
    with torch.no_grad():
        model.encoder[0].fc1.weight[0] = 0.0  # a zero row with a nonzero bias still outputs GELU(b)
    small = shrink_feedforward(model)
    assert small.encoder[0].fc1.weight.shape == (4, 8)
    ids = torch.randint(0, 20, (2, 3))
    torch.testing.assert_close(small(ids), model(ids))


def test_keep_masks_survives_training_then_becomes_permanent():
    model = _Encoder()
    pruned = prune_model(model, 0.5, keep_masks=True)
    opt = torch.optim.SGD(pruned.parameters(), lr=0.5)
    ids, y = torch.randint(0, 20, (4, 5)), torch.tensor([0, 1, 0, 1])
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(pruned(ids), y).backward()
        opt.step()
    assert sparsity_of(pruned, layers=prunable_layers(model)) == 0.5
    make_permanent(pruned)
    assert not hasattr(pruned.encoder[0].fc1, "weight_orig")
    assert isinstance(pruned.encoder[0].fc1.weight, nn.Parameter)
    assert sparsity_of(pruned, layers=prunable_layers(model)) == 0.5


def test_many_ties_follow_a_stable_sort():
    torch.manual_seed(0)
    w = torch.randint(-3, 4, (40, 30)).float()  # 7 values: thousands of ties
    for sparsity in (0.1, 0.33, 0.5, 0.8):
        k = round(sparsity * w.numel())
        expected = torch.ones(w.numel(), dtype=torch.bool)
        expected[torch.sort(w.abs().flatten(), stable=True).indices[:k]] = False
        assert torch.equal(magnitude_mask(w, sparsity).flatten(), expected)


def test_prune_model_on_the_digits_cnn_prunes_convolutions_not_the_output_layer():
    from lmbook.cnn import digits_cnn

    cnn = digits_cnn(seed=0)
    assert prunable_layers(cnn) == ["conv1", "conv2", "conv3"]
    pruned = prune_model(cnn, 0.5, structured=True)
    for name in ("conv1", "conv2", "conv3"):
        filters = pruned.get_submodule(name).weight.flatten(1)  # (C_out, C_in k k)
        assert (filters == 0).all(dim=1).float().mean() == 0.5
        assert (pruned.get_submodule(name).bias == 0).float().mean() == 0.5
    assert torch.equal(pruned.fc.weight, cnn.fc.weight)
