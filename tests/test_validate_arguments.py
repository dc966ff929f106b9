"""check_integer / check_percentile (deconvnet.engine.validate) and resolve_model, against hand-written expectations."""

import numpy as np
import pytest
import torch

from deconvnet.engine.validate import check_integer, check_percentile, is_integer
from deconvnet.errors import DeconvError
from deconvnet.models import LoadedModel, resolve_model
from deconvnet.models.transforms import ImageTransform


@pytest.mark.parametrize("value", [0, 3, np.int64(3), torch.tensor(3).item(), np.uint8(200)])
def test_integers_of_any_kind_pass_as_plain_ints(value):
    checked = check_integer(value, "k", minimum=0, maximum=255)
    assert checked == int(value) and type(checked) is int


@pytest.mark.parametrize("value, kwargs, message", [
    (0, dict(minimum=1), "k must be an integer >= 1, received 0"),
    (-3, dict(minimum=0), "k must be an integer >= 0, received -3"),
    (65, dict(minimum=1, maximum=64), "k must be an integer between 1 and 64, received 65"),
    (9, dict(maximum=8), "k must be an integer <= 8, received 9"),
    (True, dict(minimum=0), "k must be an integer >= 0, received True"),
    (2.0, dict(minimum=1), "k must be an integer >= 1, received 2.0"),
    ("3", dict(), "k must be an integer, received '3'"),
    (None, dict(minimum=1), "k must be an integer >= 1, received None"),
])
def test_bad_integers_are_refused_with_the_valid_range(value, kwargs, message):
    with pytest.raises(DeconvError) as raised:
        check_integer(value, "k", **kwargs)
    assert str(raised.value) == message


def test_the_meaning_is_named_in_the_error():
    with pytest.raises(DeconvError, match=r"^size \(the occluder's side\) must be an integer between 1 and 4"):
        check_integer(5, "size", minimum=1, maximum=4, meaning="the occluder's side")


def test_bounds_are_inclusive():
    assert check_integer(1, "k", minimum=1, maximum=1) == 1


def test_is_integer_refuses_booleans_and_floats():
    assert [is_integer(v) for v in (1, np.int32(1), True, np.bool_(True), 1.0, "1")] == [
        True, True, False, False, False, False]


@pytest.mark.parametrize("value, expected", [(None, None), (100, 100.0), (99.5, 99.5), (np.float32(50), 50.0)])
def test_percentiles_in_range_pass(value, expected):
    assert check_percentile(value) == expected


@pytest.mark.parametrize("value", [0, -5, 150, 100.5, float("nan"), True, "99"])
def test_percentiles_out_of_range_are_refused_with_the_range(value):
    with pytest.raises(DeconvError, match="percentile must be"):
        check_percentile(value)


def test_resolve_model_keeps_a_loaded_model_and_loads_a_name():
    loaded = LoadedModel("mine", torch.nn.Identity(), ImageTransform(resize=8, crop=8), "random")
    assert resolve_model(loaded) is loaded
    assert resolve_model(loaded, "ignored.safetensors") is loaded  # a LoadedModel has its own weights
    fresh = resolve_model("alexnet", "random")
    assert isinstance(fresh, LoadedModel) and fresh.name == "alexnet" and fresh.weights == "random"
    assert isinstance(fresh.model, torch.nn.Module) and not fresh.model.training


def test_resolve_model_refuses_a_bare_module_and_unknown_names():
    with pytest.raises(TypeError, match="a model name such as 'vgg16-hed' or a LoadedModel"):
        resolve_model(torch.nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(DeconvError, match="unknown model 'nope'"):
        resolve_model("nope")



def _has_output(model, side, dtype):
    try:
        return all(size > 0 for size in model(torch.zeros(1, 3, side, side, dtype=dtype)).shape[1:])
    except RuntimeError:
        return False


def test_minimum_input_size_is_found_by_brute_force_in_float32_and_float64():
    """Two max pools and an unpadded 3x3 convolution: the layer needs a side of 4 * 3 = 12 pixels."""
    import deconvnet

    model = torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.MaxPool2d(2), torch.nn.Conv2d(3, 2, 3)).eval()
    for dtype in (torch.float32, torch.float64):
        model = model.to(dtype)
        smallest = next(side for side in range(1, 40) if _has_output(model, side, dtype))
        assert deconvnet.FeatureExtractor(model).minimum_input_size("2") == smallest == 12
