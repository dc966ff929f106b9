"""Feature evolution over training (Zeiler & Fergus Fig. 4): winners checked by brute force per checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from deconvnet.cli import main
from deconvnet.dataset.images import open_image
from deconvnet.models.tiny_zfnet import TINY_TRANSFORM, TinyZFNet
from deconvnet.tasks.evolution import evolution, list_checkpoints

CHANNELS = [0, 3, 5, 8, 13, 21, 30]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Checkpoints after 0, 3 and 6 SGD steps each (safetensors and .pt, named so only a natural sort orders
    them), and a few images."""
    folder = tmp_path_factory.mktemp("evolution")
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"img{k}.png")
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir()
    torch.manual_seed(0)
    model = TinyZFNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    data, labels = torch.randn(16, 3, 64, 64), torch.arange(16) % 8
    names = ["step9.safetensors", "step10.pt", "step11.safetensors"]
    for name in names:
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if name.endswith(".pt"):
            torch.save(state, checkpoints / name)
        else:
            save_file(state, str(checkpoints / name))
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(data), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    out = folder / "out"
    result = evolution(checkpoints, images, out, model="tiny-zfnet", layer="conv2", channels=CHANNELS,
                       batch_size=4, progress=False)
    return folder, names, result


def brute_force_winners(checkpoint, images) -> dict[int, tuple[str, tuple[int, int], float]]:
    from deconvnet.models import read_state_dict

    model = TinyZFNet().eval()
    model.load_state_dict(read_state_dict(checkpoint))
    best: dict[int, tuple[str, tuple[int, int], float]] = {}
    for path in sorted(images.iterdir()):
        x = TINY_TRANSFORM(open_image(path))[None]
        with torch.no_grad():
            activation = model.features[:4](x)[0]  # conv2: (32, 6, 6)
        for channel in CHANNELS:
            plane = activation[channel]
            value = float(plane.max())
            if channel not in best or value > best[channel][2]:
                y, x_ = divmod(int(plane.argmax()), plane.shape[1])
                best[channel] = (path.name, (y, x_), value)
    return best


def test_checkpoints_sort_naturally(run):
    folder, names, _ = run
    assert [p.name for p in list_checkpoints(folder / "checkpoints")] == names


def test_winners_match_brute_force_at_every_checkpoint(run):
    folder, names, result = run
    assert [p.name for p in result.checkpoints] == names
    previous = None
    changed_somewhere = False
    for path, winners in zip(result.checkpoints, result.winners):
        expected = brute_force_winners(path, folder / "images")
        for channel in CHANNELS:
            image, position, value = expected[channel]
            assert winners[channel].image == image
            assert winners[channel].position == position
            assert winners[channel].value == pytest.approx(value, rel=1e-4, abs=1e-5)
            assert winners[channel].changed == (previous is not None and previous[channel][0] != image)
            changed_somewhere |= winners[channel].changed
        previous = expected
    assert changed_somewhere, "training should move some channel's winner (else the frame test says nothing)"


def test_json_and_figure(run):
    folder, names, result = run
    data = json.loads(result.results.read_text())
    assert data["layer"] == "conv2" and data["channels"] == CHANNELS and data["images"] == 6
    assert [c["checkpoint"].rsplit("/", 1)[-1] for c in data["checkpoints"]] == names
    first = data["checkpoints"][0]["channels"]["3"]
    assert set(first) == {"image", "y", "x", "value", "changed"} and first["changed"] is False
    assert result.figure.read_bytes()[:4] == b"\x89PNG"


def test_a_second_run_reuses_the_scans(run, capsys):
    folder, names, result = run
    again = evolution(folder / "checkpoints", folder / "images", folder / "out", model="tiny-zfnet", layer="conv2",
                      channels=CHANNELS, progress=False)
    assert again.winners == result.winners
    assert len(list((folder / "out" / "scans").iterdir())) == len(names)


def test_a_checkpoint_of_another_architecture_exits_2_in_one_line(run, tmp_path, capsys):
    folder, names, _ = run
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    listing = tmp_path / "order.txt"
    save_file(other.state_dict(), str(tmp_path / "other.safetensors"))
    listing.write_text(f"{folder / 'checkpoints' / names[0]}\nother.safetensors\n")
    status = main(["evolution", str(listing), str(folder / "images"), "--model", "tiny-zfnet", "--layer", "conv2",
                   "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("deconv: error: checkpoint 2 of 2") and "do not fit" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "scans").exists()  # refused before any scan


def test_a_missing_checkpoint_in_the_list_exits_2(run, tmp_path, capsys):
    folder, _, _ = run
    listing = tmp_path / "order.txt"
    listing.write_text("epoch_1.safetensors\n")
    status = main(["evolution", str(listing), str(folder / "images"), "--model", "tiny-zfnet", "--layer", "conv2"])
    err = capsys.readouterr().err
    assert status == 2 and "not found" in err and err.count("\n") == 1


def test_cli_runs_and_reports(run, tmp_path, capsys):
    folder, _, _ = run
    status = main(["evolution", str(folder / "checkpoints"), str(folder / "images"), "--model", "tiny-zfnet",
                   "--layer", "relu2", "--channels", "0-1", "-o", str(tmp_path / "out")])
    assert status == 0
    assert "2 channels over 6 images at 3 checkpoints" in capsys.readouterr().out
