"""Sanity checks (deconvnet.tasks.sanity.compute, deconvnet.tasks.sanity.similarity) against hand computations."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deconvnet import DeconvError
from deconvnet.cli import main
from deconvnet.tasks.sanity.compute import randomization_steps, sanity_check
from deconvnet.tasks.sanity.similarity import MEASURES, compare, reduce_map, require_analysis

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks, by hand (ties share the mean of their positions)."""
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(len(flat))
    ranks[order] = np.arange(len(flat), dtype=float)
    for value in np.unique(flat):
        tied = flat == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a) - _ranks(a).mean(), _ranks(b) - _ranks(b).mean()
    return float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))


def _clip_scale_abs(row: np.ndarray) -> np.ndarray:
    """The documented absolute reduction of a one-channel map, written out separately."""
    magnitude = np.abs(row)
    limit = np.percentile(magnitude, 99)
    return np.minimum(magnitude, limit) / limit


# ------------------------------------------------------------------ the measures


def test_identical_maps_give_one_for_every_measure():
    a = torch.randn(3, 40, 40, generator=torch.Generator().manual_seed(1))
    scores = compare(reduce_map(a), reduce_map(a.clone()))
    assert scores == pytest.approx(dict.fromkeys(MEASURES, 1.0))


def test_a_map_and_its_negative():
    a = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2))
    scores = compare(reduce_map(a), reduce_map(-a))
    assert scores["spearman_signed"] == pytest.approx(-1.0)
    assert scores["spearman_abs"] == pytest.approx(1.0)


def test_reduction_on_a_hand_made_map():
    # channel sums of |.|: [[2, 4], [4, 4]] -> 99th percentile 4; signed sums [[2, 0], [2, 4]]:
    # |.| sorted 0, 2, 2, 4 -> 99th percentile 2 + 0.97 * (4 - 2) = 3.94
    m = reduce_map(np.array([[[1.0, -2.0], [3.0, 0.0]], [[1.0, 2.0], [-1.0, 4.0]]]))
    assert m.absolute == pytest.approx(np.array([[0.5, 1.0], [1.0, 1.0]]))
    assert m.signed == pytest.approx(np.array([[2 / 3.94, 0.0], [2 / 3.94, 1.0]]))


def test_clipping_at_the_99th_percentile():
    values = -np.arange(1.0, 101.0).reshape(1, 10, 10)  # percentile 99 of 1..100 is 99.01
    m = reduce_map(values)
    assert m.absolute[9, 9] == 1.0 and m.absolute[9, 8] == pytest.approx(99 / 99.01)
    assert m.absolute[0, 0] == pytest.approx(1 / 99.01)
    assert m.signed[9, 9] == -1.0 and m.signed[4, 9] == pytest.approx(-50 / 99.01)


def test_an_empty_map_is_not_a_number():
    empty, other = reduce_map(np.zeros((3, 16, 16))), reduce_map(np.random.default_rng(0).random((3, 16, 16)))
    assert np.isnan(compare(empty, other)["spearman_abs"])


def test_missing_analysis_libraries_say_how_to_install_them(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # the next import of it fails
    with pytest.raises(DeconvError, match=r'pip install "deconvnet\[analysis\]"'):
        require_analysis()


# -------------------------------------------------------------- a linear model


def test_linear_model_backprop_map_is_the_row_of_w_and_randomizing_w_reaches_chance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 5, bias=False)).eval()
    x = torch.rand(3, 1, 32, 32) + 0.1
    w = model[1].weight.detach().numpy().copy()  # (5, 1024)
    result = sanity_check(model, x, layer="1", channel=2, modes=("backprop",), progress=False)
    assert result.steps == ["logits"]  # the alias of the last linear layer
    maps = result.example_maps["backprop"]
    # intact: the map of y_2 = W[2] . x is W[2] (times the seed y_2)
    assert maps["intact"] == pytest.approx(_clip_scale_abs(w[2]).reshape(32, 32))
    # another channel k: its map is W[k]; the reported rank correlation is that of |W[2]| and |W[k]|
    for i, k in enumerate(result.other_channels):
        expected = _spearman(_clip_scale_abs(w[2]), _clip_scale_abs(w[k]))
        assert result.selectivity["backprop"]["other_channel"]["spearman_abs"][i] == pytest.approx(expected)
    # randomized W: the map is a row of the new matrix, the same for every image; its rank
    # correlation with |W[2]| is the hand-computed one, and at chance level (sd 1/sqrt(1024))
    randomized = maps["cascading:logits"]
    rho = _spearman(_clip_scale_abs(w[2]), randomized)
    assert result.cascading["backprop"]["spearman_abs"][:, 0] == pytest.approx([rho] * 3)
    assert abs(rho) < 0.15
    assert not np.allclose(randomized, maps["intact"])


# --------------------------------------------------------------- a small CNN


def _small_classifier() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6),
    ).eval()


def test_steps_go_from_the_target_down_and_keep_a_norm_with_its_convolution():
    steps = randomization_steps(_small_classifier(), "8")
    assert [s.modules for s in steps] == [("8",), ("3", "4"), ("0",)]
    assert [s.modules for s in randomization_steps(_small_classifier(), "5")] == [("3", "4"), ("0",)]


def test_the_users_model_is_untouched_and_a_seed_gives_identical_results():
    model = _small_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parameters = [id(p) for p in model.parameters()]
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    first = sanity_check(model, x, layer="8", channel="top1", seed=7, batch_size=2, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [id(p) for p in model.parameters()] == parameters and not model.training
    second = sanity_check(model, x, layer="8", channel="top1", seed=7, batch_size=2, progress=False)
    numbers = [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in (first, second)]
    assert json.dumps(numbers[0]) == json.dumps(numbers[1])
    rebatched = sanity_check(model, x, layer="8", channel="top1", seed=7, batch_size=3, progress=False)
    for mode in first.modes:  # other batches: float32 rounding only
        for measure in MEASURES:
            assert np.allclose(rebatched.cascading[mode][measure], first.cascading[mode][measure], atol=1e-5,
                               equal_nan=True)
    other = sanity_check(model, x, layer="8", channel="top1", seed=8, modes=("backprop",), progress=False)
    assert not np.allclose(other.cascading["backprop"]["spearman_abs"],
                           first.cascading["backprop"]["spearman_abs"], equal_nan=True)
    assert first.class_choices["top1"] == first.channels and first.inactive == []
    assert first.classes is not None and set(first.classes["guided"]) == {"random_class", "lowest_class"}


def test_a_random_seed_over_a_linear_layer_projects_its_positive_weighting():
    # For y = W x, a seed r (all positive) over y projects to r^T W: check it is not one row alone
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 4, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.abs_()  # y > 0, so the seed's sign is known
    x = torch.rand(1, 1, 16, 16) + 0.1
    result = sanity_check(model, x, layer="1", channel=0, modes=("backprop",), progress=False)
    seeded = result.example_maps["backprop"]["random_seed"].ravel()
    w = model[1].weight.detach().numpy()
    mix, *_ = np.linalg.lstsq(w.T, seeded, rcond=None)  # seeded ~ w^T mix, up to the clipping of 1%
    assert np.linalg.norm(w.T @ mix - seeded) < 0.05 * np.linalg.norm(seeded)
    assert result.selectivity["backprop"]["random_seed"]["spearman_abs"][0] < 0.999


# -------------------------------------------------------------- command line


def test_the_command_writes_figures_and_json(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["sanity", "--layer", "relu1_2", "--channel", "3", "--modes", "guided,backprop", "--no-independent",
                   str(ASSETS / "cat.jpg"), "-o", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "randomization.png", "sanity.json",
                                                    "selectivity.png"]
    data = json.loads((out / "sanity.json").read_text())
    assert [s["name"] for s in data["steps"]] == ["conv1_2", "conv1_1"]
    assert len(data["cascading"]["per_image"]["guided"]["ssim"][0]) == 2
    assert data["independent"]["per_image"] == {}
    assert "guided: after randomizing all 2 steps, rank correlation with the intact map" in printed
    assert data["inactive"] == [] and "not active" not in printed


def test_a_unit_inactive_on_an_image_is_reported():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([0.0, 1.0]))  # channel 0 is 0 everywhere
    result = sanity_check(model, torch.rand(2, 1, 8, 8), layer="1", channel=0, modes=("guided",), progress=False)
    assert result.inactive == [0, 1]
    assert np.isnan(result.cascading["guided"]["spearman_abs"]).all()


def test_the_command_rejects_a_channel_out_of_range(tmp_path, capsys):
    status = main(["sanity", "--layer", "relu1_2", "--channel", "999", str(ASSETS / "cat.jpg"), "-o", str(tmp_path)])
    assert status == 2
    assert "channel 999 is out of range" in capsys.readouterr().err


def test_steps_by_block_for_residual_networks():
    import torchvision

    from deconvnet.models.efficientnet_lite import EfficientNetLite0

    resnet = torchvision.models.resnet18().eval()
    blocks = [f"layer{stage}.{index}" for stage in (4, 3, 2, 1) for index in (1, 0)]
    assert [s.name for s in randomization_steps(resnet, "fc", "block")] == ["fc", *blocks, "conv1"]
    by_layer = randomization_steps(resnet, "fc", "auto")  # 21 layers: one per step
    assert len(by_layer) == 21 and by_layer[-1].modules == ("conv1", "bn1")
    assert ("layer2.0.downsample.0", "layer2.0.downsample.1") in [s.modules for s in by_layer]
    lite0 = randomization_steps(EfficientNetLite0().eval(), "logits")  # 80 layers: one block per step
    assert [s.name for s in lite0] == ["_fc", "_conv_head", *[f"_blocks.{i}" for i in range(15, -1, -1)], "_conv_stem"]
