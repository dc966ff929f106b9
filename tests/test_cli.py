"""The command line end to end, as a new user runs it."""

from pathlib import Path

import torch
from PIL import Image
from torch import nn

import deconvnet
from deconvnet.cli import main
from deconvnet.models import LoadedModel
from deconvnet.models.transforms import ImageTransform

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_visualize_with_the_default_model_writes_the_figure(tmp_path, capsys):
    output = tmp_path / "cat.png"
    status = main(["visualize", "--layer", "conv5_3", "--channel", "12", str(ASSETS / "cat.jpg"), "-o", str(output)])
    printed = capsys.readouterr().out
    assert status == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "conv5_3 channel 12 at (y=" in printed and "receptive field 196x196" in printed
    assert "; deconvnet and guided" in printed  # both rules by default
    assert f"wrote {output}" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["cat.png"]  # no temporary file left


def test_layers_lists_names_aliases_shapes_and_fields(capsys):
    assert main(["layers"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["features.28"][1:] == ["conv5_3", "Conv2d", "512x14x14", "196x196", "16"]
    assert rows["features.4"][1:] == ["pool1", "MaxPool2d", "64x112x112", "6x6", "2"]


def test_models_lists_the_offline_default(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("vgg16-hed")


def test_a_class_name_selects_the_output_unit(tmp_path):
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(4, 3)).eval()
    loaded = LoadedModel("tiny", classifier, ImageTransform(resize=32, crop=32), "random",
                         categories=["tench", "tabby", "lynx"])
    Image.new("RGB", (40, 40), (200, 100, 50)).save(tmp_path / "in.png")
    done = deconvnet.visualize(tmp_path / "in.png", tmp_path / "out.png", layer="logits", channel="Tabby",
                               model=loaded)
    assert done.unit.channel == 1 and done.unit.position is None
    assert (tmp_path / "out.png").exists()


TINY = ["--model", "tiny-zfnet", "--weights", "random"]  # builds in milliseconds, no download
CAT = str(ASSETS / "cat.jpg")


def test_every_command_creates_its_missing_output_folders(tmp_path, capsys):
    """The one output policy: a figure file's or an output folder's missing parents are created."""
    runs = {
        "filters": (["filters", *TINY, "-o", "{out}/fig.png"], ["fig.json", "fig.png", "fig_spectrum.csv"]),
        "occlusion": (["occlusion", CAT, *TINY, "--layer", "conv2", "--channel", "1", "--size", "32", "--stride",
                       "32", "-o", "{out}/"], ["cat_occlusion_conv2_c1.png"]),
        "invariance": (["invariance", CAT, *TINY, "--translations", "0,8", "--scales", "1", "--rotations", "0",
                        "-o", "{out}/inv.png"], ["inv.csv", "inv.json", "inv.png"]),
        "sanity": (["sanity", CAT, *TINY, "--layer", "conv2", "--channel", "1", "--no-independent", "--mode", "guided",
                    "-o", "{out}"], ["curves.png", "randomization.png", "sanity.json", "selectivity.png"]),
    }
    for name, (argv, written) in runs.items():
        out = tmp_path / name / "new" / "deeper"
        assert main([arg.format(out=out) for arg in argv]) == 0, capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == written
        assert f"wrote {out}" in capsys.readouterr().out


def test_an_output_that_cannot_be_created_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    for argv in (["filters", *TINY], ["sanity", CAT, *TINY, "--layer", "conv2", "--channel", "1"]):
        assert main([*argv, "-o", str(tmp_path / "plain.txt" / "sub" / "fig.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot be created" in err and "plain.txt' is a file" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]
