"""The shipped vgg16-hed weights are a faithful conversion: the network still detects edges."""

import hashlib
import re
from importlib.resources import files

import torch
import torchvision
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from deconvnet.models.hed import HED_MEAN_BGR, load_vgg16_hed
from deconvnet.models.transforms import ImageTransform

WEIGHTS = files("deconvnet.weights") / "vgg16-hed.safetensors"


def rectangle_image():
    """A light rectangle on a grey background: its outline is the only edge."""
    image = Image.new("RGB", (160, 160), (128, 128, 128))
    ImageDraw.Draw(image).rectangle([40, 50, 119, 109], fill=(230, 230, 230))
    return image


def test_hed_edges_follow_the_rectangle_outline():
    model = load_vgg16_hed()
    x = ImageTransform(resize=None, crop=None, mean=HED_MEAN_BGR, scale=255.0, bgr=True)(rectangle_image())[None]
    with torch.no_grad():
        edges = model.edges(x)[0, 0]  # (H, W) in [0, 1]
    outline = torch.zeros(160, 160, dtype=torch.bool)
    outline[48:53, 38:122] = outline[107:112, 38:122] = True  # top and bottom sides, 5 px wide
    outline[48:112, 38:43] = outline[48:112, 117:122] = True  # left and right sides
    inside = torch.zeros_like(outline)
    inside[65:95, 60:100] = True
    far_background = torch.zeros_like(outline)
    far_background[5:30, 60:100] = True
    assert edges[outline].mean() > 0.4
    assert edges[inside].mean() < 0.02
    assert edges[far_background].mean() < 0.15
    assert edges[outline].mean() > 20 * edges[inside].mean()


def test_features_have_torchvision_vgg16_layout():
    ours = load_vgg16_hed().features
    reference = torchvision.models.vgg16().features
    assert [type(m) for m in ours] == [type(m) for m in reference]
    for mine, theirs in zip(ours, reference):
        if isinstance(mine, torch.nn.Conv2d):
            assert mine.weight.shape == theirs.weight.shape
            assert (mine.stride, mine.padding) == (theirs.stride, theirs.padding)
    assert isinstance(ours[29], torch.nn.ReLU) and isinstance(ours[30], torch.nn.MaxPool2d)  # relu5_3, pool5


def test_every_weight_comes_from_the_file():
    state = load_file(str(WEIGHTS))
    model = load_vgg16_hed()
    assert set(state) == set(model.state_dict())  # 13 convs and the 6 HED heads, nothing left at init
    assert all(v.dtype == torch.float16 for v in state.values())
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, state[key].float())


def test_model_card_states_the_file_hash():
    card = (files("deconvnet.weights") / "vgg16-hed.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert digest in re.findall(r"[0-9a-f]{64}", card)


def test_edges_keep_the_input_size_and_leave_the_input_alone():
    """Odd sizes (ceil-mode pools, resized side outputs) and in-place ReLUs do not corrupt the taps."""
    model = load_vgg16_hed()
    x = torch.randn(2, 3, 67, 45) * 50
    before = x.clone()
    with torch.no_grad():
        first, second, features = model.edges(x), model.edges(x), model(x)
    assert first.shape == (2, 1, 67, 45)
    assert 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, second) and torch.equal(x, before)
    assert features.shape == (2, 512, 3, 2)  # pool5 of Keras 'same' pooling: ceil(67 / 32), ceil(45 / 32)


def test_forward_traces_as_a_plain_chain():
    graph = torch.fx.Tracer().trace(load_vgg16_hed())
    called = [node.target for node in graph.nodes if node.op == "call_module"]
    assert called == [f"features.{i}" for i in range(31)]  # forward is features only, no HED heads
