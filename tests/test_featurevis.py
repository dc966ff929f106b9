"""Feature visualization by optimization (Olah et al., Distill 2017): the parametrization against hand
computation, the optimum of a linear filter against its closed form, seeding, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deconvnet import feature_visualization
from deconvnet.errors import DeconvError
from deconvnet.featurevis.objectives import gram_similarity
from deconvnet.featurevis.param import FourierImage, PixelImage, decorrelate_colour, spectrum_scale


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)).eval()


def test_spectrum_scale_is_one_over_frequency_with_a_floor():
    # fftfreq(4) = 0, 1/4, -1/2, -1/4 (rows); rfftfreq(4) = 0, 1/4, 1/2 (columns); the floor is 1/4
    expected = torch.tensor([[4, 4, 2],
                             [4, 1 / math.sqrt(1 / 8), 1 / math.sqrt(5 / 16)],
                             [2, 1 / math.sqrt(5 / 16), 1 / math.sqrt(1 / 2)],
                             [4, 1 / math.sqrt(1 / 8), 1 / math.sqrt(5 / 16)]], dtype=torch.float64)
    torch.testing.assert_close(spectrum_scale(4, 4), expected)


def test_fourier_image_inverts_a_known_spectrum():
    image = FourierImage(1, 4, 4, decorrelate=False)
    with torch.no_grad():
        image.spectrum.zero_()
        image.spectrum[0, 0, 0, 0, 0] = 2.0  # constant term of red: scale 4, ortho 1/4, divisor 4
        image.spectrum[0, 1, 0, 1, 0] = 1.0  # cos(2 pi x / 4) in green: scale 4, twice (Hermitian), 1/4, 1/4
    x = torch.logit(image().double())[0]  # (3, 4, 4) before the sigmoid
    columns = torch.arange(4, dtype=torch.float64)
    torch.testing.assert_close(x[0], torch.full((4, 4), 0.5, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(x[1], (0.5 * torch.cos(math.pi * columns / 2)).expand(4, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(x[2], torch.zeros(4, 4, dtype=torch.float64), atol=1e-6, rtol=0)


def test_colour_decorrelation_is_lucids_normalised_svd_sqrt():
    largest_column = math.sqrt(0.26 ** 2 + 0.27 ** 2 + 0.27 ** 2)  # the first column's norm is the largest
    red = decorrelate_colour(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)).flatten()
    second = decorrelate_colour(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(red, torch.tensor([0.26, 0.27, 0.27], dtype=torch.float64) / largest_column)
    torch.testing.assert_close(second, torch.tensor([0.09, 0.0, -0.09], dtype=torch.float64) / largest_column)


def test_a_linear_filter_is_maximized_by_its_own_direction():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 1, 8)).eval()  # one output unit that sees the whole 8x8 image: w . x + b
    radius = 2.0
    fv = feature_visualization(net, "0", [0], size=8, steps=150, lr=0.05, transform=[],
                               param=PixelImage(1, 8, 8, decorrelate=False, max_norm=radius))
    weight = net[0].weight.detach()[0]
    direction = (fv.rgb[0] - 0.5).flatten()
    cosine = torch.nn.functional.cosine_similarity(direction, weight.flatten(), dim=0)
    assert cosine > 0.99
    # the closed-form optimum of w . (0.5 + d) + b over |d| <= r is b + 0.5 sum(w) + r |w|
    best = net[0].bias.detach()[0] + 0.5 * weight.sum() + radius * weight.norm()
    assert fv.activations[0] <= best + 1e-4 and fv.activations[0] > best - 0.02 * radius * weight.norm()


def test_same_seed_same_images_and_another_seed_others():
    net = _tiny()
    first, again, other = (feature_visualization(net, "2", [1, 4], size=20, steps=3, seed=seed) for seed in (7, 7, 8))
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)
    assert first.images.shape == (2, 3, 20, 20) and first.channels == [1, 4]


def test_the_objective_rises_and_the_model_is_untouched():
    net = _tiny()
    before = {name: value.clone() for name, value in net.state_dict().items()}
    start = feature_visualization(net, "2", [3], size=20, steps=1, lr=1e-9, transform=[])
    fv = feature_visualization(net, "2", [3], size=20, steps=30, lr=0.1, transform=[])
    assert fv.activations[0] > start.activations[0]
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert not net._forward_hooks and not any(m._forward_hooks for m in net.modules())
    assert all(torch.equal(before[name], value) for name, value in net.state_dict().items())


def test_gram_similarity_against_a_loop():
    torch.manual_seed(0)
    acts = torch.randn(4, 3, 5, 5, dtype=torch.float64)  # two groups of two
    got = gram_similarity(acts, groups=2)
    grams = [a.flatten(1) @ a.flatten(1).T for a in acts]
    expected = [torch.nn.functional.cosine_similarity(grams[i].flatten(), grams[i ^ 1].flatten(), dim=0)
                for i in range(4)]
    torch.testing.assert_close(got, torch.stack(expected))


def test_diversity_makes_copies_of_a_channel_differ():
    net = _tiny()
    fv = feature_visualization(net, "2", [2], size=20, steps=2, copies=3, diversity=1.0)
    assert fv.images.shape[0] == 3 and not torch.equal(fv.images[0], fv.images[1])


@pytest.mark.parametrize("layer, channels, options, message", [
    ("nope", [0], {}, r"unknown layer 'nope'.*\b0\b"),
    ("2", [6], {}, r"channel 6 is out of range: layer 2 has 6 channels: valid 0-5"),
    ("2", [-1], {}, r"channel -1 is negative: channels count from 0"),
    ("2", [0], {"steps": 0}, r"steps must be a whole number of at least 1"),
    ("2", [0], {"size": 4}, r"size 4 is too small for layer 2: it needs an input of at least 5x5"),
    ("6", [0], {"objective": "neuron"}, r"layer 6 has no spatial maps"),
    ("2", [0], {"objective": "class"}, r"needs an output of class scores"),
    ("2", [0], {"param": "wavelet"}, r"unknown param 'wavelet': expected one of fourier, pixel"),
])
def test_bad_requests_are_refused_in_one_line(layer, channels, options, message):
    with pytest.raises((DeconvError, ValueError), match=message) as caught:
        feature_visualization(_tiny(), layer, channels, **{"size": 20, "steps": 1, **options})
    assert "\n" not in str(caught.value)


def test_the_command_writes_a_sheet_of_the_offline_model(run_python, tmp_path):
    from PIL import Image

    output = tmp_path / "fv.png"
    done = run_python("deconvnet.cli", "featurevis", "--layer", "conv5_3", "--channel", "12,40", "-o", str(output),
                      "--steps", "2", "--size", "64", prefix=["-m"])
    assert done.returncode == 0, done.stderr
    with Image.open(output) as sheet:
        assert sheet.mode == "RGB" and sheet.width > 2 * 64 and sheet.height > 64
    assert "ch 12" in done.stdout and not list(tmp_path.glob(".*"))  # no temporary file left


def test_the_command_refuses_bad_input_in_one_line(run_python, tmp_path):
    done = run_python("deconvnet.cli", "featurevis", "--layer", "conv9", "--channel", "1", "-o",
                      str(tmp_path / "fv.png"), prefix=["-m"])
    assert done.returncode == 2 and "unknown layer 'conv9'" in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "fv.png").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--layer", "conv5_3", "--channel", "512", "--steps", "1"], "layer conv5_3 has 512 channels: valid 0-511"),
    (["--layer", "conv5_3", "--channel", "1", "--steps", "0"], "--steps must be a whole number of at least 1"),
    (["--layer", "conv5_3", "--channel", "1", "--steps", "1", "--objective", "class"], "needs an output of class"),
])
def test_the_command_exits_2_with_one_line(capsys, tmp_path, arguments, message):
    from deconvnet.cli import main

    try:
        status = main(["featurevis", *arguments, "--size", "32", "-o", str(tmp_path / "fv.png")])
    except SystemExit as exit:  # argparse's refusals
        status = exit.code
    error = capsys.readouterr().err
    assert status == 2 and message in error and error.count("\n") == 1
    assert not (tmp_path / "fv.png").exists()


def test_a_channel_gives_the_same_image_alone_and_in_a_batch():
    # float64, so that the batched kernels' rounding (float32: ~1e-6) is far below the tolerance
    net = _tiny().double()
    options = dict(size=20, steps=6, lr=0.1, seed=11)
    alone = feature_visualization(net, "2", [3], **options)
    batch = feature_visualization(net, "2", [5, 0, 3, 1], **options)
    assert alone.images.dtype == torch.float64
    assert (alone.images[0] - batch.images[2]).abs().max() < 1e-10
    assert (alone.images[0] - batch.images[0]).abs().max() > 1e-3  # another channel: another image
    # copies of a channel stay together (the diversity term couples them) and keep their images too
    options.update(copies=2, diversity=0.5)
    pair = feature_visualization(net, "2", [3], **options)
    pairs = feature_visualization(net, "2", [1, 3], **options)
    assert (pair.images - pairs.images[2:]).abs().max() < 1e-10
    assert (pair.images[0] - pair.images[1]).abs().max() > 1e-3


@pytest.mark.parametrize("chunk", [1, 4])
def test_a_step_in_chunks_is_the_whole_batchs_step(monkeypatch, chunk):
    """On a CPU the network runs a few images at a time (STEP_CHUNK); the chunks' gradients are joined
    before the parameters, and a channel's copies (which the diversity term compares) share a chunk,
    so the images equal one pass over the whole batch. float64: the kernels' rounding is far below 1e-10."""
    import deconvnet.featurevis.optimize as optimize

    net = _tiny().double()
    options = dict(size=20, steps=5, lr=0.1, seed=4, copies=2, diversity=0.5)
    monkeypatch.setattr(optimize, "STEP_CHUNK", 64)  # all six images in one pass
    whole = feature_visualization(net, "2", [4, 1, 2], **options)
    monkeypatch.setattr(optimize, "STEP_CHUNK", chunk)  # 1 -> chunks of 2 (a channel's copies); 4 -> of 4 and 2
    chunked = feature_visualization(net, "2", [4, 1, 2], **options)
    assert (whole.images - chunked.images).abs().max() < 1e-10
    assert torch.allclose(whole.activations, chunked.activations, rtol=0, atol=1e-10)
    assert (whole.images[0] - whole.images[1]).abs().max() > 1e-3  # the diversity term is at work
