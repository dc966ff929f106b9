"""The default projection against an independent implementation: Captum's neuron attributions.

Captum's NeuronDeconvolution, NeuronGuidedBackprop and NeuronGradient run the model's own
forward pass and autograd's backward, with the ReLU rule swapped by hooks. Ours must follow
the same forward pass (its switches and masks, engine/faithful.py) and differ only by the
backward's accumulation order over the unit's cone.

Tolerance: 1e-4 of the map's peak. Rounding through a backward of L = 13-16 layers whose sums
have up to n = 4608 terms typically moves a value by about L * sqrt(n) * 2**-24 of the peak
(5e-5 for VGG16, rounding errors adding like a random walk; tests/tolerance.py); a single
flipped mask or switch moves it by 1e-3 to 1e-1 (issue 24 measured 2.5e-2).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision

import deconvnet
from conftest import SAMPLES

captum_attr = pytest.importorskip("captum.attr")

ATTRIBUTIONS = {"deconvnet": "NeuronDeconvolution", "guided": "NeuronGuidedBackprop", "backprop": "NeuronGradient"}
# relu5_3, pool5 and relu4_3 of VGG16; relu5 and pool5 of AlexNet; the last ReLU and relu3_2 of VGG11-BN
MODELS = {"vgg16": ["features.29", "features.30", "features.22"], "alexnet": ["features.11", "features.12"],
          "vgg11_bn": ["features.27", "features.13"]}


def photo() -> torch.Tensor:
    """A 224x224 photo with ImageNet normalisation: a shared one, or a smooth synthetic scene."""
    transform = torchvision.transforms.Compose([
        torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(224), torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    files = sorted(SAMPLES.glob("*.JPEG")) + sorted(SAMPLES.glob("*.jpg"))
    if files:
        from PIL import Image

        return transform(Image.open(files[0]).convert("RGB"))[None]
    y, x = torch.meshgrid(torch.linspace(0, 6, 224), torch.linspace(0, 6, 224), indexing="ij")
    return torch.stack([torch.sin(x + y), torch.cos(2 * x - y), torch.sin(3 * y)])[None]


@pytest.mark.parametrize("name", MODELS)
def test_default_projection_agrees_with_captum_at_the_strongest_units(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    captum_model = copy.deepcopy(model)
    for module in captum_model.modules():  # Captum hooks ReLU modules and needs them out of place
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    x = photo()
    with deconvnet.Deconvnet(model) as dn:
        for layer in MODELS[name]:
            activation = dn.activations(x, [layer])[layer][0]  # (C, H, W)
            channel = int(activation.flatten(1).amax(1)[:32].argmax())  # the strongest of the first 32
            y, x_ = divmod(int(activation[channel].argmax()), activation.shape[-1])
            for mode, attribution in ATTRIBUTIONS.items():
                ours = dn.project_units(x, layer, [(0, channel, (y, x_))], mode=mode)
                method = getattr(captum_attr, attribution)(captum_model, captum_model.get_submodule(layer))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Captum warns that it sets requires_grad
                    reference = method.attribute(x, neuron_selector=(channel, y, x_)) * ours.units[0].value
                peak = float(reference.abs().max())
                assert peak > 0, (layer, mode)
                error = float((ours.maps - reference).abs().max()) / peak
                assert error < 1e-4, (layer, channel, (y, x_), mode, error)
