"""Every command that takes --model runs on a timm model by name and on a saved Hugging Face folder.

Random weights only (offline); tiny inputs, one layer, a few channels, so that the whole file stays
fast. Each command must exit 0 and write its output; what the outputs mean is tested per command.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deconvnet
from deconvnet import cli

pytest.importorskip("timm")
pytest.importorskip("transformers")

from test_zoo_hf import saved  # noqa: E402  (needs transformers)

# model kind: (a middle layer, its channels to scan, the logits layer)
KINDS = {
    "timm": ("blocks.5", "0-1"),
    "hf": ("resnet.encoder.stages.3", "0-1"),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Three small generated photos, a tiny HF folder, and two checkpoints of each model."""
    root = tmp_path_factory.mktemp("zoo")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(80, 64), (64, 72), (72, 72)]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[h // 4: h // 2, w // 4: w // 2] = (200, 40 * i, 30)  # a block for the parts file
        Image.fromarray(pixels).save(images / f"img{i}.png")
    (root / "parts.json").write_text(json.dumps(
        {f"img{i}.png": {"block": [20, 18, 40, 36], "corner": [0, 0, 24, 24]} for i in range(3)}))
    saved(root / "hf")
    return root


def model_arguments(kind: str, root: Path) -> list[str]:
    if kind == "timm":
        return ["--model", "timm:mobilenetv3_small_050", "--weights", "random"]
    return ["--model", f"hf:{root / 'hf'}"]


def checkpoints(kind: str, root: Path) -> Path:
    """Two random state dicts of the model, as a training run would save them."""
    from safetensors.torch import save_file

    folder = root / f"checkpoints-{kind}"
    if not folder.exists():
        folder.mkdir()
        name = "timm:mobilenetv3_small_050" if kind == "timm" else f"hf:{root / 'hf'}"
        for epoch in (1, 2):
            torch.manual_seed(epoch)
            model = deconvnet.load(name, weights="random").model
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / f"epoch{epoch}.safetensors")
    return folder


def commands(kind: str, root: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Each command's arguments (without --model) and a file it must write."""
    layer, channels = KINDS[kind]
    images, image = root / "images", root / "images" / "img0.png"
    evolution = ["evolution", str(checkpoints(kind, root)), str(images), "--layer", layer, "--channel", "0",
                 "--limit", "2", "-o", str(out / "evolution")]
    return {
        "layers": (["layers"], out / "none"),
        "visualize": (["visualize", str(image), "--layer", layer, "--channel", "0", "--mode", "guided",
                       "-o", str(out / "v.png")], out / "v.png"),
        "occlusion": (["occlusion", str(image), "--layer", layer, "--channel", "0", "--size", "32",
                       "--stride", "32", "-o", str(out / "o.png")], out / "o.png"),
        "occlusion class": (["occlusion", str(image), "--class", "1", "--size", "32", "--stride", "32",
                             "-o", str(out / "oc.png")], out / "oc.png"),
        "top9": (["top9", str(images), "-o", str(out / "top9"), "--layer", layer, "--channel", channels,
                  "--k", "2", "--workers", "0", "--limit", "3"], out / "top9"),
        "microscope": (["microscope", str(images), "-o", str(out / "site"), "--layer", layer, "--channel",
                        channels, "--k", "2", "--workers", "0", "--limit", "3"], out / "site" / "index.html"),
        "evolution": (evolution, out / "evolution" / "evolution.json"),
        "sanity": (["sanity", str(images), "-o", str(out / "sanity"), "--layer", "logits", "--channel", "top1",
                    "--mode", "guided", "--steps", "block", "--no-independent", "--limit", "2"],
                   out / "sanity" / "sanity.json"),
        "filters": (["filters", str(images), "-o", str(out / "f.png")], out / "f.png"),
        "invariance": (["invariance", str(image), "--layer", layer, "--translations", "0,8",
                        "--scales", "1,1.2", "--rotations", "0,20", "-o", str(out / "inv.png")], out / "inv.png"),
        "correspondence": (["correspondence", str(root / "parts.json"), "--images", str(images), "--layer", layer,
                            "--repeats", "1",
                            "-o", str(out / "corr")], out / "corr" / "correspondence.json"),
    }


COMMANDS = ["layers", "visualize", "occlusion", "occlusion class", "top9", "microscope", "evolution", "sanity",
            "filters", "invariance", "correspondence"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_command_with_model_runs_and_writes_its_output(kind, command, workspace, tmp_path, capsys):
    argv, output = commands(kind, workspace, tmp_path)[command]
    if command != "evolution":  # evolution's weights are its checkpoints
        argv = argv + model_arguments(kind, workspace)
    elif kind == "timm":
        argv = argv + ["--model", "timm:mobilenetv3_small_050"]
    else:
        argv = argv + ["--model", f"hf:{workspace / 'hf'}"]
    status = cli.main(argv)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    if command == "layers":
        assert "logits" in captured.out
    else:
        assert output.exists() and (output.is_dir() and any(output.iterdir()) or output.stat().st_size > 0)
    if command == "sanity":  # the random-seed control cuts the model's graph: it must have run too
        seeded = json.loads(output.read_text())["selectivity"]["per_image"]["guided"]["random_seed"]
        assert np.isfinite(seeded["spearman_abs"]).all()
