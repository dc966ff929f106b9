"""The cone-restricted backward pass (engine/cones.py) equals the full pass and autograd."""

import copy

import pytest
import torch
import torchvision
from test_cropped_projection import assert_equals_full_pass, build
from torch import nn

import deconvnet
import deconvnet.engine.faithful as faithful
from deconvnet.engine.cones import plan_cones
from deconvnet.engine.relu import RULES
from reference import autograd_projection
from tolerance import assert_same_projection, network_sums


def test_fully_connected_layer_has_no_cone_and_equals_the_full_pass():
    model = build("mobilenet_v3_small")
    torch.manual_seed(4)
    x = torch.rand(2, 3, 64, 67)
    with deconvnet.Deconvnet(model) as dn:
        assert_equals_full_pass(dn, x, "classifier.0", [(0, 5, None), (1, 7, None)], "backprop")


@pytest.mark.parametrize("mode", ["deconvnet", "guided", "backprop"])
@pytest.mark.parametrize("position", [(0, 0), (3, 6), (7, 7)])
def test_cone_pass_equals_autograd_in_corners_and_middle(position, mode):
    model = build("resnet18")
    torch.manual_seed(5)
    x = torch.rand(1, 3, 64, 64)
    expected, value, _ = autograd_projection(model, x, "layer2.0.conv1", 9, position, mode)
    with deconvnet.Deconvnet(model) as dn:
        projection = dn.project_units(x, "layer2.0.conv1", [(0, 9, position)], mode=mode)
    assert projection.units[0].value == value  # the model's own forward, bit for bit (engine/faithful.py)
    assert expected.abs().max() > 0
    assert_same_projection(projection.maps, expected, **network_sums(model))  # autograd adds in another order


@pytest.mark.parametrize("mode", ["deconvnet", "guided", "backprop"])
def test_a_unit_that_reads_only_padding_has_a_zero_map(mode):
    # Output (0, 0) of a 1x1 convolution with padding 1 reads only the padding: its cone below is
    # empty (found by tests/test_property_adjoint.py on all-zero activations). Its value is the
    # bias, its map zero; an interior unit in the same call is unaffected.
    torch.manual_seed(3)
    model = nn.Sequential(nn.MaxPool2d(2, 1, 1), nn.Conv2d(2, 2, 1, 2, 1, 2), nn.ReLU()).eval()
    x = torch.randn(1, 2, 12, 13)
    with deconvnet.Deconvnet(model) as dn:
        projection = dn.project_units(x, "1", [(0, 1, (0, 0)), (0, 1, (3, 3))], mode=mode)
    assert projection.units[0].value == model[1].bias[1].item()
    assert torch.equal(projection.maps[0], torch.zeros_like(projection.maps[0]))
    expected, value, _ = autograd_projection(model, x, "1", 1, (3, 3), mode)
    assert projection.units[1].value == value
    assert expected.abs().max() > 0
    assert_same_projection(projection.maps[1:], expected, **network_sums(model))


@pytest.mark.parametrize("trial_seed", range(24))
def test_a_trial_over_few_channels_cannot_pass_by_chance(trial_seed, monkeypatch):
    # A cropped 1x1 convolution over two channels adds its three terms in another order than the
    # whole one at some positions (on every CPU tried), and two orders agree on random numbers
    # seven times in ten: a trial comparing only this unit's two values passed for about one trial
    # seed in four, and the unit then read a cone forward the model never ran (found under
    # ATEN_CPU_CAPABILITY=default). Whatever the trial's noise, the value is the model's own.
    monkeypatch.setattr(faithful, "TRIAL_SEED", 1000 + trial_seed)
    torch.manual_seed(3)
    model = nn.Sequential(nn.MaxPool2d(2, 1, 1), nn.Conv2d(2, 2, 1, 2, 1, 2), nn.ReLU()).eval()
    x = torch.randn(1, 2, 12, 13)
    with torch.no_grad():
        own = model[1](model[0](x))  # (1, 2, 7, 7)
    positions = [(y, x_) for y in range(1, 6) for x_ in range(1, 6)]
    with deconvnet.Deconvnet(model) as dn:
        for position in positions:
            projection = dn.project_units(x, "1", [(0, 1, position)], mode="guided")
            assert projection.units[0].value == own[0, 1, position[0], position[1]].item(), position


def test_vgg16_cones_have_the_hand_computed_sizes():
    """A conv5_3 unit's cone: 1 at conv5_3, 3x3 at conv5_2, 5x5 at conv5_1, 7x7 at pool4, 14x14 at
    conv4_3 (2x2 pool), 20x20 at pool3, 40x40 at conv3_3, ... 196x196 at the input (its field)."""
    vgg = torchvision.models.vgg
    features = vgg.make_layers(vgg.cfgs["D"]).eval()  # VGG16's convolutions, without the large classifier
    names = {"conv5_3": "28", "conv5_2": "26", "conv5_1": "24", "pool4": "23", "conv4_3": "21", "pool3": "16",
             "conv3_3": "14"}
    with deconvnet.Deconvnet(features) as dn:
        target = dn.graph.find(names["conv5_3"]).node
        record = dn._recorder.record(torch.rand(1, 3, 224, 224), target, RULES["deconvnet"])
        cones = plan_cones(dn.graph, record, target)
        sizes = {name: cones[dn.graph.find(index).node].size for name, index in names.items()}
        at_input = cones[dn.graph.input]
    assert sizes == {"conv5_3": (1, 1), "conv5_2": (3, 3), "conv5_1": (5, 5), "pool4": (7, 7),
                     "conv4_3": (14, 14), "pool3": (20, 20), "conv3_3": (40, 40)}
    assert at_input.size == (196, 196) and at_input.stride == (16, 16)


def test_a_gate_broadcast_over_the_map_has_no_cone():
    """mobilenet_v3's SE gate is (N, C, 1, 1): its branch gets the whole map, the main path a cone."""
    model = build("mobilenet_v3_small")
    with deconvnet.Deconvnet(model) as dn:
        target = dn.graph.find("features.4.block.3.0").node
        record = dn._recorder.record(torch.rand(1, 3, 64, 64), target, RULES["guided"])
        cones = plan_cones(dn.graph, record, target)
        gate = dn.graph.find("features.4.block.2.avgpool").node
        assert cones[gate] is None
        assert cones[target] is not None and cones[target].size == (1, 1)


class AveragePooled(nn.Module):
    """An average pool has an exact adjoint (steps.Adjoint), which runs on whole maps only."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                                    nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.layers(x)


# Models whose whole path up to the layer runs on boxes (coneforward.py), and one that cannot (the
# average pool): every unit alone in its image, in corners, on borders and in the middle.
CONE_FORWARD = [("dilated", 45, "relu3", True), ("vgg11_bn", 64, "features.11", True),
                ("resnet18", 72, "layer2.1.relu:2", True), ("mobilenet_v2", 64, "features.6.conv.2", True),
                ("squeezenet1_1", 67, "features.7.expand3x3", True), ("alexnet", 99, "features.5", True),
                ("average", 40, "layers.4", False)]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])  # PIL's images: channels last
@pytest.mark.parametrize("mode", ["deconvnet", "guided", "backprop"])
@pytest.mark.parametrize("name,size,layer,boxable", CONE_FORWARD)
def test_cone_forward_equals_the_full_pass(name, size, layer, boxable, mode, layout, monkeypatch):
    import deconvnet.engine.deconvnet as engine

    answers = []

    def spy(*args, **kwargs):
        answers.append(engine_cone_record(*args, **kwargs))
        return answers[-1]

    engine_cone_record = engine.cone_record
    monkeypatch.setattr(engine, "cone_record", spy)
    torch.manual_seed(6)
    model = AveragePooled().eval() if name == "average" else build(name)
    x = torch.rand(4, 3, size, size + 3).contiguous(memory_format=layout)
    with deconvnet.Deconvnet(model) as dn:
        _, channels, height, width = dn.activations(x, [layer])[layer].shape
        units = [(0, 1, (0, 0)), (1, channels - 1, (height - 1, width - 1)), (2, 2, (height // 2, width // 2)),
                 (3, 0, (0, width - 1))]
        assert_equals_full_pass(dn, x, layer, units, mode)
    assert answers and all((record is not None) == boxable for record in answers)


def test_cone_forward_reads_the_weights_as_they_are_now():
    """The channels-last copy of a convolution's weight (the backward's, and the forward's for a
    channels-last image, as PIL's are) follows the model's weight."""
    model = build("vgg11_bn")
    x = torch.rand(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with deconvnet.Deconvnet(model) as dn:
        before = dn.project_units(x, "features.11", [(0, 3, (2, 2))]).maps
        with torch.no_grad():
            model.features[8].weight.mul_(2)  # the conv below the target
        try:
            after = dn.project_units(x, "features.11", [(0, 3, (2, 2))]).maps
            reference = dn.project_units(x, "features.11", [(0, 3, (2, 2))], crop=False).maps
        finally:
            with torch.no_grad():
                model.features[8].weight.div_(2)
    assert not torch.allclose(after, before)
    assert_same_projection(after, reference, **network_sums(model))


def _cone_forward_trusted(monkeypatch) -> None:
    """Skip the trials: every cone forward serves, every convolution runs on its region."""
    import deconvnet.engine.coneforward as coneforward

    monkeypatch.setattr(faithful.Trials, "faithful", lambda self, *args: True)
    monkeypatch.setattr(coneforward, "_region_in_models_order", lambda *args: True)


@pytest.mark.parametrize("name,size,layer,boxable", [case for case in CONE_FORWARD if case[3]])
def test_cone_forward_logic_equals_the_full_pass_in_float64(name, size, layer, boxable, monkeypatch):
    """The logic, apart from rounding: in float64 the cone forward itself (no trial, no fallback)
    gives the full pass's values and maps to 1e-12 (float64's rounding through ~20 layers of
    sums of a few thousand terms is about 1e-13 of the values)."""
    _cone_forward_trusted(monkeypatch)
    torch.manual_seed(7)
    model = copy.deepcopy(build(name)).double()  # build's models are shared
    x = torch.rand(4, 3, size, size + 3, dtype=torch.float64)
    with deconvnet.Deconvnet(model) as dn:
        _, channels, height, width = dn.activations(x, [layer])[layer].shape
        units = [(0, 1, (0, 0)), (1, channels - 1, (height - 1, width - 1)), (2, 2, (height // 2, width // 2)),
                 (3, 0, (0, width - 1))]
        for mode in ("deconvnet", "guided", "backprop"):
            fast = dn.project_units(x, layer, units, mode=mode)
            full = dn.project_units(x, layer, units, mode=mode, crop=False)
            assert [u.value for u in fast.units] == pytest.approx([u.value for u in full.units], rel=1e-12, abs=1e-12)
            scale = float(full.maps.abs().max())
            torch.testing.assert_close(fast.maps, full.maps, rtol=0, atol=1e-12 * scale)
        assert dn.cone_statistics.cone_units == 3 * len(units) and dn.cone_statistics.full_units == 0


def test_whole_map_convolutions_give_the_models_own_values(monkeypatch):
    """Where a convolution's region would add in another order, it runs on the whole map as the
    model does (coneforward._whole_map_convolution): the values are then the model's, bit for bit."""
    import deconvnet.engine.coneforward as coneforward

    monkeypatch.setattr(coneforward, "_region_in_models_order", lambda *args: False)
    units = [(0, 3, (0, 0)), (1, 5, (2, 3))]
    stats = _vgg11_bn_against_the_full_pass(units, "guided", width=61)
    assert stats.cone_units == len(units) and stats.failed_trials == 0


def _vgg11_bn_against_the_full_pass(units, mode, width=64) -> faithful.ConeStatistics:
    torch.manual_seed(8)
    x = torch.rand(2, 3, 64, width)
    with deconvnet.Deconvnet(build("vgg11_bn")) as dn:
        assert_equals_full_pass(dn, x, "features.11", units, mode)
        return dn.cone_statistics


def test_a_cone_forward_off_by_one_ulp_is_caught_and_the_full_forward_serves(monkeypatch):
    """A cone forward whose convolutions add in another order (here: one ulp off) fails its trial:
    the units read the full forward's switches and masks, so the values are still the model's."""
    import deconvnet.engine.coneforward as coneforward

    def off_by_one_ulp(convolution):
        def perturbed(*args):
            value = convolution(*args)
            return torch.nextafter(value, torch.full_like(value, float("inf")))
        return perturbed

    # on the regions and on whole maps alike, so that the convolutions' own trial cannot settle it
    for name in ("_convolution", "_whole_map_convolution"):
        monkeypatch.setattr(coneforward, name, off_by_one_ulp(getattr(coneforward, name)))
    units = [(0, 3, (1, 1)), (1, 4, (3, 2))]
    stats = _vgg11_bn_against_the_full_pass(units, "backprop")
    assert stats.cone_units == 0 and stats.full_units == len(units) and stats.failed_trials >= 1


def test_a_geometry_is_tried_when_it_comes_back_and_once_only_leaving_the_random_state_alone(monkeypatch):
    monkeypatch.setattr(faithful, "TRIAL_AFTER", 1)  # the library's policy (conftest tries on sight)
    model = build("vgg11_bn")
    x = torch.rand(3, 3, 64, 64)
    with deconvnet.Deconvnet(model) as dn:
        torch.manual_seed(10)
        state = torch.get_rng_state()
        stats = dn.cone_statistics
        for image in range(3):  # the same interior geometry in three images
            dn.project_units(x, "features.11", [(image, 2, (3, 3))])
            assert stats.trials == min(image, 1)  # first seen: the full forward; then tried once
        assert torch.equal(torch.get_rng_state(), state)
        assert stats.full_units + stats.cone_units == 3 and stats.full_units >= 1
        dn.project_units(x, "features.11", [(0, 2, (0, 0))])  # a corner: another geometry, first seen
        assert stats.trials == 1


def test_a_cone_covering_most_of_the_image_reads_the_full_forward_without_a_trial(monkeypatch):
    """The library's policy (conftest lifts it): in a batch of several images, a cone larger than
    CONE_MAX_SHARE of the image saves little of a full forward, so its unit reads the full forward at
    once, and no trial runs; a small cone in the same session still runs forward over its cone, and
    so does the large one when x is a single image."""
    import deconvnet.engine.deconvnet as engine_deconvnet

    monkeypatch.setattr(engine_deconvnet, "CONE_MAX_SHARE", 0.5)
    torch.manual_seed(11)
    x = torch.rand(2, 3, 64, 64)
    with deconvnet.Deconvnet(build("vgg11_bn")) as dn:
        stats = dn.cone_statistics
        large, small = "features.18", "features.4"  # fields 62 and 8 px against a 64 px image
        assert min(dn.receptive_field(large).size[0], 64) ** 2 > 0.5 * 64 ** 2 > dn.receptive_field(small).size[0] ** 2
        assert_equals_full_pass(dn, x, large, [(0, 3, (2, 2)), (1, 5, (4, 1))], "guided")
        assert (stats.cone_units, stats.trials, stats.full_units) == (0, 0, 2)
        assert_equals_full_pass(dn, x, small, [(0, 3, (12, 12))], "guided")
        assert stats.cone_units == 1 and stats.trials == 1
        # One image: the full forward a cone saves is the whole pass, so the large cone runs (tried first).
        assert_equals_full_pass(dn, x[:1], large, [(0, 3, (2, 2))], "guided")
        assert stats.cone_units == 2 and stats.trials == 2


# Two units in each of images 0 and 2 of four. The last convolution's cone (18 px) covers more than
# half of the 24 px image, so the units share their image's full forward, which can run image by
# image, over images 0 and 2 only.
SHARING = [(0, 3, (2, 2)), (0, 5, (1, 3)), (2, 4, (3, 1)), (2, 3, (0, 0))]


def exact_network(second_pool: type[nn.Module] = nn.MaxPool2d) -> nn.Module:
    """Weights in {-1, 0, 1} on inputs in 0..15: every sum is an integer below 2**24 (405, 29160,
    2.1e6 at most after each convolution), exact in float32 in any order, so on every CPU a row
    alone gets, bit for bit, the numbers the whole batch gets: only a nudge can make them differ.
    An average pool keeps them exact too (quarters of integers below 2**22).
    (The trial's noise is then made of such integers too: see integer_trials.)"""
    torch.manual_seed(13)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), second_pool(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.randint(-1, 2, module.weight.shape))
                module.bias.zero_()
    return model.eval()


def integer_images() -> torch.Tensor:
    return torch.randint(0, 16, (4, 3, 24, 24), generator=torch.Generator().manual_seed(14)).float()


def integer_trials(monkeypatch) -> None:
    """The trials draw integer images instead of Gaussian noise, on which the exact network's sums
    are exact: the verdict then depends only on what the trial compares."""
    def integer_noise(self, target, x, draw):
        noise = torch.randint(0, 16, x.shape, generator=torch.Generator().manual_seed(15 + draw)).float()
        return noise, self.recorder.record(noise, target, faithful.TRIAL_RULE)

    monkeypatch.setattr(faithful.Trials, "_noise_record", integer_noise)


def _recorded_batch_sizes(monkeypatch, nudge=None, only=None) -> list[int]:
    """The batch size of every forward the recorder runs; ``nudge`` changes the records of one row
    (only the ``only``-th such record, counting from 0, when given)."""
    from deconvnet.engine.recorder import Recorder

    sizes: list[int] = []
    record = Recorder.record

    def spy(self, x, target, rule):
        made = record(self, x, target, rule)
        if nudge is not None and x.shape[0] == 1 and only in (None, sizes.count(1)):
            nudge(made)
        sizes.append(x.shape[0])
        return made

    monkeypatch.setattr(Recorder, "record", spy)
    return sizes


@pytest.mark.parametrize("second_pool", [nn.MaxPool2d, nn.AvgPool2d])
def test_units_sharing_their_images_read_a_forward_over_each_of_those_images_alone(second_pool, monkeypatch):
    """After a trial that each row alone gets the numbers the four-row forward gives it, the units
    read a forward over image 0 and one over image 2; their values are the model's, bit for bit.
    (The average pool is an exact adjoint: its record keeps its input's leaves, compared too.)"""
    integer_trials(monkeypatch)
    sizes = _recorded_batch_sizes(monkeypatch)
    with deconvnet.Deconvnet(exact_network(second_pool)) as dn:
        assert_equals_full_pass(dn, integer_images(), "6", SHARING, "guided")
        stats = dn.cone_statistics
    assert (stats.row_trials, stats.failed_row_trials, stats.trials, stats.cone_units) == (1, 0, 0, 0)
    # the trial: noise over 4 rows, then each row alone; the projection: images 0 and 2; the full pass
    assert [size for size in sizes if size] == [4, 1, 1, 1, 1, 1, 1, 4]


def test_image_by_image_forward_logic_equals_the_full_pass_in_float64(monkeypatch):
    """The forward image by image, its verdict taken as given, on a BatchNorm network at a layer
    whose cone covers the 64 px image: maps and values equal the full pass's to float64 rounding."""
    monkeypatch.setattr(faithful.Trials, "rows_alone", lambda self, target, x: True)
    sizes = _recorded_batch_sizes(monkeypatch)
    torch.manual_seed(12)
    x = torch.rand(4, 3, 64, 64, dtype=torch.float64)
    units = [(3, 2, (1, 1)), (1, 7, (3, 2)), (3, 5, (0, 3)), (1, 2, None)]  # images 3 and 1, one unit its strongest
    with deconvnet.Deconvnet(copy.deepcopy(build("vgg11_bn")).double()) as dn:
        fast = dn.project_units(x, "features.18", units, mode="guided")
        full = dn.project_units(x, "features.18", units, mode="guided", crop=False)
    assert [unit[:3] for unit in fast.units] == [unit[:3] for unit in full.units]
    torch.testing.assert_close(torch.tensor([u.value for u in fast.units], dtype=torch.float64),
                               torch.tensor([u.value for u in full.units], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(fast.maps, full.maps, rtol=1e-12, atol=1e-12 * float(full.maps.abs().max()))
    assert [size for size in sizes if size] == [1, 1, 4]  # images 3 and 1 alone, then the full pass


def _nudge_activation(record) -> None:
    flat = record.activation.view(-1)
    flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf")))


def _nudge_switch(record) -> None:
    switches = next(saved[0] for saved in record.saved.values()
                    if isinstance(saved, tuple) and saved and isinstance(saved[0], torch.Tensor)
                    and saved[0].dtype == torch.int64)
    switches.view(-1)[0] += 1


def _nudge_mask(record) -> None:
    mask = next(saved for saved in record.saved.values()
                if isinstance(saved, torch.Tensor) and saved.dtype == torch.bool)
    mask.view(-1)[0] = ~mask.view(-1)[0]


@pytest.mark.parametrize("nudge", [_nudge_activation, _nudge_switch, _nudge_mask], ids=["value", "switch", "mask"])
def test_rows_that_alone_get_other_numbers_read_the_forward_over_all_of_x(nudge, monkeypatch):
    """A forward over one row made to differ from the four-row forward in one value, one max-pool
    switch or one ReLU mask fails its trial: the units read the forward over all of x."""
    integer_trials(monkeypatch)
    sizes = _recorded_batch_sizes(monkeypatch, nudge)
    with deconvnet.Deconvnet(exact_network()) as dn:
        assert_equals_full_pass(dn, integer_images(), "6", SHARING, "guided")
        stats = dn.cone_statistics
    assert (stats.row_trials, stats.failed_row_trials) == (1, 1)
    assert [size for size in sizes if size] == [4, 1, 4, 4]


def test_a_trial_runs_every_row_alone(monkeypatch):
    """A kernel may treat a batch's last rows apart; the last row alone made to differ (the trial's
    fourth one-row forward) fails the trial too."""
    integer_trials(monkeypatch)
    sizes = _recorded_batch_sizes(monkeypatch, _nudge_activation, only=3)
    with deconvnet.Deconvnet(exact_network()) as dn:
        assert_equals_full_pass(dn, integer_images(), "6", SHARING, "guided")
        stats = dn.cone_statistics
    assert (stats.row_trials, stats.failed_row_trials) == (1, 1)
    assert [size for size in sizes if size] == [4, 1, 1, 1, 1, 4, 4]
