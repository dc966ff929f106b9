"""Whole networks: every mode's projection equals autograd's input gradient with the same ReLU rule."""

import pytest
import torch
import torchvision
from torch import nn

import deconvnet
from reference import autograd_projection, with_relu_rule
from tolerance import assert_same_projection, network_sums

MODES = ["deconvnet", "guided", "backprop"]


def randomized_batchnorm(model):
    """Running statistics that are not the identity, so the BN rule is really exercised."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


def build(name):
    torch.manual_seed(0)
    return randomized_batchnorm(torchvision.models.get_model(name, weights=None)).eval()


def strongest_channel(model, x, path):
    """The channel with the largest activation, found with a plain hook (independently of deconvnet)."""
    kept = {}
    handle = model.get_submodule(path).register_forward_hook(lambda m, i, o: kept.setdefault("a", o.clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    activation = kept["a"][0]
    return int(activation.flatten(1).amax(1).argmax()) if activation.dim() == 3 else int(activation.argmax())


NETWORK_CASES = [
    ("alexnet", 96, "features.3", "conv"),
    ("alexnet", 96, "features.5", "pool"),
    ("alexnet", 96, "classifier.4", "fc"),
    ("vgg16", 64, "features.21", "conv"),
    ("vgg16", 64, "features.30", "pool"),
    ("vgg16", 64, "classifier.3", "fc"),
    ("vgg11_bn", 64, "features.11", "conv+bn"),
    ("vgg11_bn", 64, "features.27", "pool"),
    ("vgg11_bn", 64, "classifier.6", "logits"),
]


@pytest.fixture(scope="module")
def networks():
    return {name: build(name) for name in {case[0] for case in NETWORK_CASES}}


@pytest.fixture(scope="module")
def ruled_networks(networks):
    """Copies whose ReLUs backpropagate with each mode's rule, made once per module."""
    return {(name, mode): with_relu_rule(model, mode) for name, model in networks.items() for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,size,path,kind", NETWORK_CASES)
def test_projection_equals_autograd(networks, ruled_networks, name, size, path, kind, mode):
    model = networks[name]
    torch.manual_seed(1)
    x = torch.rand(1, 3, size, size)
    channel = strongest_channel(model, x, path)
    expected, value, position = autograd_projection(model, x, path, channel, None, mode,
                                                         ruled=ruled_networks[name, mode])
    with deconvnet.Deconvnet(model) as dn:
        projection = dn.project_units(x, path, [(0, channel, None)], mode=mode)
    unit = projection.units[0]
    assert unit.position == (tuple(position) if position is not None else None)
    assert unit.value == value  # the model's own forward pass
    assert expected.abs().max() > 0, "a dead unit would make the comparison vacuous"
    # autograd's backward adds in another order (tests/tolerance.py)
    assert_same_projection(projection.maps, expected, **network_sums(model))


def test_aliases_name_the_paper_layers(networks):
    with deconvnet.Deconvnet(networks["vgg16"]) as dn:
        assert [dn.layer(a).name for a in ("conv1_1", "conv5_3", "relu5_3", "pool5", "fc6", "fc7", "fc8")] == [
            "features.0", "features.28", "features.29", "features.30", "classifier.0", "classifier.3", "classifier.6"]
    with deconvnet.Deconvnet(networks["alexnet"]) as dn:
        assert [dn.layer(a).name for a in ("conv1", "pool1", "conv2", "conv5", "pool5", "fc6", "fc8")] == [
            "features.0", "features.2", "features.3", "features.10", "features.12", "classifier.1", "classifier.6"]


def test_several_channels_share_one_forward_and_match_one_by_one(networks):
    model = networks["vgg16"]
    x = torch.rand(1, 3, 64, 64)
    with deconvnet.Deconvnet(model) as dn:
        together = dn.project(x, "conv3_3", [3, 7, 11], mode="guided")
        one_by_one = torch.stack([dn.project(x, "conv3_3", c, mode="guided")[0] for c in (3, 7, 11)])
    assert together.shape == (1, 3, 3, 64, 64)
    # a batch of 3 and 3 of 1 sum in different orders; conv3_3 is 7 convolutions deep, fan-in 256*3*3 + 1
    assert_same_projection(together[0], one_by_one, layers=7, fan_in=2305)


def test_batch_of_images_each_seeded_with_its_own_unit(networks):
    model = networks["alexnet"]
    torch.manual_seed(2)
    x = torch.rand(3, 3, 96, 96)
    with deconvnet.Deconvnet(model) as dn:
        batched = dn.project_units(x, "conv2", [(2, 5, None), (0, 5, (1, 2)), (1, 9, None)])
        for row, (image, channel, position) in enumerate([(2, 5, None), (0, 5, (1, 2)), (1, 9, None)]):
            single = dn.project(x[image:image + 1], "conv2", channel, position)
            assert_same_projection(batched.maps[row], single[0], layers=2, fan_in=1601)  # conv2: 64*5*5 + 1


def test_zfnet_has_the_paper_shapes():
    model = deconvnet.ZFNet().eval()
    with deconvnet.Deconvnet(model) as dn:
        sizes = {alias: dn.activations(torch.zeros(1, 3, 224, 224), [alias])[alias].shape[-1]
                 for alias in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv5", "pool5")}
    assert sizes == {"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13, "conv3": 13, "conv5": 13, "pool5": 6}


def test_receptive_field_of_vgg16_matches_hand_computation(networks):
    with deconvnet.Deconvnet(networks["vgg16"]) as dn:
        # conv3_3: 3 convs of 3x3 at stride 4 after two pools: 1+2+2 (block1) +1 (pool1)... = 40, stride 4
        field = dn.receptive_field("conv3_3")
        assert field.size == (40, 40) and field.stride == (4, 4)
        assert dn.receptive_field("conv1_1").size == (3, 3)
        assert dn.receptive_field("pool5").size == (212, 212)
        assert dn.receptive_field("fc6").size is None  # a fully connected unit sees everything
        # unit (0, 0) of conv1_1 sees rows -1..1 (padding 1)
        assert dn.box("conv1_1", (0, 0), (64, 64)) == deconvnet.Box(-1, -1, 3, 3)


def test_more_units_than_one_backward_chunk_match_one_by_one(networks):
    model = networks["alexnet"]
    torch.manual_seed(4)
    x = torch.rand(2, 3, 96, 96)
    channels = list(range(deconvnet.engine.deconvnet.BACKWARD_CHUNK + 3))
    with deconvnet.Deconvnet(model) as dn:
        together = dn.project(x, "conv2", channels, mode="guided")  # (2, C, 3, H, W)
        for image, channel in [(0, 0), (1, 5), (1, len(channels) - 1)]:
            alone = dn.project(x[image:image + 1], "conv2", channel, mode="guided")[0]
            assert_same_projection(together[image, channel], alone, layers=2, fan_in=1601)  # conv2: 64*5*5 + 1
