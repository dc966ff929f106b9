"""Every torchvision CNN family projects, in every mode, exactly as autograd with ruled activations.

The reference (tests/reference.py, ``ruled_projection``) is independent of the engine: it runs
the model itself under autograd and replaces only the backward of the ReLU-like activations
(ReLU, ReLU6, LeakyReLU, ELU, SiLU, GELU, Hardswish, Mish) with the mode's rule. Gates, norms,
average pools, permutes, channel shuffles and layer scales are differentiated by autograd.
"""

import pytest
import torch
import torchvision
from torch import nn

import deconvnet
from deconvnet.models import TORCHVISION_CNNS
from reference import ruled_projection
from tolerance import assert_same_projection, network_sums

MODES = ["deconvnet", "guided", "backprop"]

# family: (smallest member, input side, its last container stage)
FAMILIES = {
    "alexnet": ("alexnet", 64, "features"),
    "vgg": ("vgg11", 32, "features"),
    "vgg_bn": ("vgg11_bn", 32, "features"),
    "resnet": ("resnet18", 64, "layer4"),
    "resnext": ("resnext50_32x4d", 32, "layer4"),
    "wide_resnet": ("wide_resnet50_2", 32, "layer4"),
    "densenet": ("densenet121", 32, "features.denseblock4"),
    "googlenet": ("googlenet", 32, "inception5b"),
    "inception_v3": ("inception_v3", 75, "Mixed_7c"),
    "squeezenet": ("squeezenet1_1", 64, "features.12"),
    "shufflenet_v2": ("shufflenet_v2_x0_5", 32, "stage4"),
    "mnasnet": ("mnasnet0_5", 32, "layers.13"),
    "mobilenet_v2": ("mobilenet_v2", 32, "features.17"),
    "mobilenet_v3": ("mobilenet_v3_small", 32, "features.12"),
    "efficientnet": ("efficientnet_b0", 32, "features.7"),
    "efficientnet_v2": ("efficientnet_v2_s", 32, "features.6"),
    "regnet_x": ("regnet_x_400mf", 32, "trunk_output.block4"),
    "regnet_y": ("regnet_y_400mf", 32, "trunk_output.block4"),
    "convnext": ("convnext_tiny", 32, "features.7"),
}


def build(name):
    """The architecture with random weights of a sensible scale, built without torchvision's
    initializers (seconds for the large fully connected layers) and with non-trivial norms."""
    options = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    try:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None, **options)
    except NotImplementedError:  # regnet reads values while it builds
        model = torchvision.models.get_model(name, weights=None, **options)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            for parameter_name, parameter in module.named_parameters(recurse=False):
                if parameter.dim() > 1:  # (out, in, ...) weights: unit variance per output
                    bound = (3.0 / (parameter[0].numel())) ** 0.5
                    parameter.uniform_(-bound, bound, generator=generator)
                elif parameter_name == "weight":
                    parameter.uniform_(0.5, 1.5, generator=generator)
                else:  # biases, layer scales
                    parameter.uniform_(-0.1, 0.1, generator=generator)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.num_batches_tracked.zero_()
    return model.eval()


def first_conv(model):
    return next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def check_layers(model, size, layers):
    torch.manual_seed(2)
    x = torch.rand(1, 3, size, size)
    with deconvnet.Deconvnet(model) as dn:
        for layer in layers:
            activation = dn.activations(x, [layer])[layer][0]
            channel = int(activation.flatten(1).amax(1).argmax()) if activation.dim() == 3 else int(activation.argmax())
            for mode in MODES:
                projection = dn.project_units(x, layer, [(0, channel, None)], mode=mode)
                expected, value, position = ruled_projection(model, x, layer, channel, None, mode)
                assert projection.units[0].value == value, (layer, mode)  # the model's own forward
                assert projection.units[0].position == (None if position is None else tuple(position))
                assert expected.abs().max() > 0, (layer, mode)
                # autograd's backward adds in another order (tests/tolerance.py)
                assert_same_projection(projection.maps, expected, **network_sums(model))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_projects_like_autograd_at_logits_last_stage_and_first_conv(family):
    name, size, stage = FAMILIES[family]
    model = build(name)
    check_layers(model, size, ["logits", stage, first_conv(model)])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TORCHVISION_CNNS if n not in ("regnet_y_128gf",)])
def test_every_builder_projects_like_autograd_at_logits(name):
    model = build(name)
    check_layers(model, 75, ["logits", first_conv(model)])


def test_every_builder_is_registered_and_loads_random_weights():
    names = set(TORCHVISION_CNNS)
    for family, (member, _, _) in FAMILIES.items():
        assert member in names, family
    assert set(TORCHVISION_CNNS) <= set(deconvnet.MODELS)
    loaded = deconvnet.load("mnasnet0_5", weights="random")
    assert not loaded.model.training
