"""One forward pass for units of several layers and modes (Deconvnet.project_layers) equals
each layer's own full pass."""

import pytest
import torch
from test_cropped_projection import build

import deconvnet
from tolerance import assert_same_projection, network_sums


@pytest.mark.parametrize("name,layers", [("vgg11_bn", ["features.4", "features.11", "features.15"]),
                                         ("resnet18", ["conv1", "layer1.1.relu:2", "layer2.1.relu:2", "fc"])])
def test_units_of_several_layers_and_modes_equal_their_full_passes(name, layers):
    model = build(name)
    torch.manual_seed(7)
    x = torch.rand(2, 3, 64, 61)
    modes = ["deconvnet", "guided", "backprop"]
    with deconvnet.Deconvnet(model) as dn:
        shapes = dn.activations(x, layers)
        units = {}
        for layer in layers:
            if shapes[layer].dim() == 2:
                units[layer] = [(0, 5, None), (1, 9, None)]
            else:
                _, _, height, width = shapes[layer].shape
                # two units of one image, corners and the middle, and the strongest one
                units[layer] = [(0, 1, (0, 0)), (0, 2, (height - 1, width - 1)), (1, 3, (height // 2, width // 2)),
                                (1, 4, None)]
        found = dn.project_layers(x, units, modes=modes)
        assert sorted(found) == sorted((layer, mode) for layer in layers for mode in modes)
        for (layer, mode), projection in found.items():
            full = dn.project_units(x, layer, units[layer], mode=mode, crop=False)
            assert [u.position for u in projection.units] == [u.position for u in full.units]
            assert [u.value for u in projection.units] == [u.value for u in full.units]  # one forward pass
            assert_same_projection(projection.maps, full.maps, **network_sums(dn.model))


def test_no_units_is_refused_with_the_reason():
    with deconvnet.Deconvnet(build("vgg11_bn")) as dn:
        with pytest.raises(deconvnet.DeconvError, match="at least one layer and one mode"):
            dn.project_layers(torch.rand(1, 3, 32, 32), {}, modes=["deconvnet"])
        with pytest.raises(ValueError, match="mode"):
            dn.project_layers(torch.rand(1, 3, 32, 32), {"features.4": [(0, 1, None)]}, modes=["sideways"])
