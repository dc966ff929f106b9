"""deconv filters (the paper's Fig. 6): band and aliasing shares against hand computations,
closed-form spectra and white noise; dead filters; the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deconvnet import DeconvError
from deconvnet.cli import main
from deconvnet.tasks.filters.compute import dead_by_rms, filter_spectra, first_conv, never_active

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def checkerboard(side: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return ((-1.0) ** (rows + cols)).float()


def gaussian(side: int, sigma: float) -> torch.Tensor:
    r = torch.arange(side, dtype=torch.float64) - (side - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).float()


def hand_bank(side: int) -> torch.Tensor:
    bank = torch.zeros(3, 3, side, side)  # (filters, RGB, k, k)
    bank[0] = 1.0
    bank[1] = checkerboard(side)
    bank[2] = gaussian(side, 1.5)
    return bank


def test_unpadded_bank_puts_all_energy_at_one_frequency():
    # size == kernel side: the DFT of a constant is a single DC term and that of the +-1
    # checkerboard a single term at (0.5, 0.5) cycles/pixel (radius 0.71, outside every
    # stride-s Nyquist square for s >= 2 and on the border of stride 1's).
    spectra = {s: filter_spectra(hand_bank(4)[:2], stride=s, size=4) for s in (1, 2, 4)}
    assert np.allclose(spectra[2].bands, [[1, 0, 0], [0, 0, 1]])
    assert np.allclose(spectra[1].aliasing, [0, 0])
    assert np.allclose(spectra[2].aliasing, [0, 1])
    assert np.allclose(spectra[4].aliasing, [0, 1])
    assert np.allclose(spectra[2].rms, [1.0, 1.0])


def dirichlet(f: np.ndarray, k: int) -> np.ndarray:
    """|DTFT| of a length-k box at frequency f (cycles/sample): |sin(pi k f) / sin(pi f)|."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.abs(np.sin(np.pi * k * f) / np.sin(np.pi * f))
    return np.where(np.isclose(np.sin(np.pi * f), 0), k, value)


@pytest.mark.parametrize("k, size, stride", [(5, 64, 2), (7, 64, 2), (11, 64, 4), (6, 32, 3)])
def test_zero_padded_box_and_checkerboard_match_the_closed_form(k, size, stride):
    f = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fx, fy)
    # a sample exactly on an edge stands for a cell the edge halves
    def below(value, edge):
        return np.where(np.isclose(value, edge), 0.5, (value < edge) * 1.0)

    a = 1 / (2 * stride)
    outside = 1 - below(abs(fx), a) * below(abs(fy), a)
    bands = [below(radius, 1 / 8), below(radius, 1 / 4) - below(radius, 1 / 8), 1 - below(radius, 1 / 4)]
    # the box's spectrum is a product of Dirichlet kernels; the checkerboard is the box
    # modulated by (-1)^(m+n), which shifts the spectrum by half a cycle on both axes.
    box_power = (dirichlet(fx, k) * dirichlet(fy, k)) ** 2
    board_power = (dirichlet(fx - 0.5, k) * dirichlet(fy - 0.5, k)) ** 2
    bank = torch.stack([torch.ones(3, k, k), checkerboard(k).expand(3, k, k)])
    spectra = filter_spectra(bank, stride=stride, size=size)
    for row, power in enumerate((box_power, board_power)):
        share = power / power.sum()
        assert spectra.bands[row] == pytest.approx([(share * m).sum() for m in bands], abs=1e-9)
        assert spectra.aliasing[row] == pytest.approx((share * outside).sum(), abs=1e-9)


def test_smooth_gaussian_matches_the_continuous_fourier_transform():
    # |G(f)|^2 = exp(-4 pi^2 sigma^2 r^2): the share within radius R is 1 - exp(-4 pi^2 sigma^2 R^2),
    # and within the square |fx|, |fy| <= a it is erf(2 pi sigma a)^2.
    sigma = 1.5
    spectra = {s: filter_spectra(hand_bank(11)[2:], stride=s, size=128) for s in (2, 4)}
    low = 1 - math.exp(-4 * math.pi**2 * sigma**2 / 64)
    high = math.exp(-4 * math.pi**2 * sigma**2 / 16)
    assert spectra[2].bands[0] == pytest.approx([low, 1 - low - high, high], abs=0.01)
    for stride in (2, 4):
        expected = 1 - math.erf(2 * math.pi * sigma / (2 * stride)) ** 2
        assert spectra[stride].aliasing[0] == pytest.approx(expected, abs=0.01)
    assert spectra[4].aliasing[0] > 10 * spectra[2].aliasing[0]  # the smooth filter aliases at stride 4


def test_white_noise_aliases_everything_outside_the_nyquist_square():
    # iid weights have a flat expected spectrum: the share outside the square is its area fraction
    torch.manual_seed(0)
    size = 64
    for stride in (2, 4):
        spectra = filter_spectra(torch.randn(400, 3, 11, 11), stride=stride, size=size)
        assert np.mean(spectra.aliasing) == pytest.approx(1 - 1 / stride**2, abs=0.01)
        assert np.mean(spectra.radial_power[:, 2:20]) == pytest.approx(1.0, abs=0.05)  # white: 1


def test_dead_filters_by_rms_and_by_activity():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 8, 5)
    with torch.no_grad():
        conv.weight[2] = 0.0
        conv.weight[5] *= 0.01
        conv.bias[5] = 0.5  # tiny weights but active: dead by RMS only
        conv.bias[2] = -1.0  # zero weights and a negative bias: never active
        conv.weight[6] = -conv.weight[6].abs()  # all-negative weights on positive images
        conv.bias[6] = -0.1
    spectra = filter_spectra(conv.weight, stride=1)
    assert np.flatnonzero(dead_by_rms(spectra.rms, 0.1)).tolist() == [2, 5]
    assert np.isnan(spectra.aliasing[2]) and not np.isnan(spectra.aliasing[5])
    model = nn.Sequential(conv, nn.ReLU(inplace=True)).eval()
    batches = [torch.rand(4, 3, 16, 16) for _ in range(3)]
    peak, count = never_active(model, "0", iter(batches), progress=False)
    brute = torch.stack([torch.nn.functional.conv2d(b, conv.weight, conv.bias).amax(dim=(0, 2, 3))
                         for b in batches]).amax(0)
    assert count == 12
    assert peak == pytest.approx(brute.detach().double().numpy(), abs=1e-5)
    assert np.flatnonzero(peak <= 0).tolist() == [2, 6]
    with pytest.raises(DeconvError, match="between 0 and 1"):
        dead_by_rms(spectra.rms, 1.5)


def test_first_conv_is_the_first_one_run():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(4, 4, 3)
            self.early = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.late(self.early(x))

    assert first_conv(Backwards(), (16, 16)) == "early"


def test_the_command_compares_alexnet_with_zfnet(tmp_path, capsys):
    # random weights: white spectra, so the aliasing share is the area outside the Nyquist square:
    # 1 - 1/16 at AlexNet's stride 4, 1 - 1/4 at ZFNet's stride 2
    for name, stride in (("alexnet", 4), ("zfnet", 2)):
        out = tmp_path / f"{name}.png"
        assert main(["filters", "--model", name, "--weights", "random", "--sort", "aliasing", "-o", str(out)]) == 0
        record = json.loads(out.with_suffix(".json").read_text())
        assert record["stride"] == stride and record["layer"] == "features.0" and record["alias"] == "conv1"
        assert record["median_aliasing"] == pytest.approx(1 - 1 / stride**2, abs=0.03)
        assert len(record["filters"]) == (64 if name == "alexnet" else 96)
        lines = (tmp_path / f"{name}_spectrum.csv").read_text().splitlines()
        assert lines[0].startswith("frequency_cycles_per_pixel") and len(lines) > 30
        assert out.stat().st_size > 10_000
    assert "median aliasing share" in capsys.readouterr().out


def test_the_command_with_images_reports_never_active_filters(tmp_path, capsys):
    out = tmp_path / "f.png"
    assert main(["filters", "--model", "alexnet", "--weights", "random", "--stride", "2", str(ASSETS / "cat.jpg"),
                 str(ASSETS / "coffee.jpg"), "-o", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["images"] == 2 and record["stride"] == 2 and record["layer_stride"] == 4
    assert isinstance(record["never_active"], list)
    assert all("max_activation" in row for row in record["filters"])


@pytest.mark.parametrize("argv, message", [
    (["--layer", "relu1"], "not a Conv2d"),
    (["--layer", "conv9"], "unknown layer"),
    (["--stride", "0"], "stride must be an integer >= 1"),
    (["--dead-fraction", "2"], "between 0 and 1"),
])
def test_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "f.png"
    status = main(["filters", "--model", "alexnet", "--weights", "random", *argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1
    assert not out.exists()
