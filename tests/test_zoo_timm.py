"""timm models by name: projections equal autograd with the mode's rule, the transform is timm's own,
class names select logits, and the command line reports a wrong name or a missing extra in one line.

Random weights only (offline). The reference (tests/reference.py, ``ruled_projection``) runs the
model itself under autograd with only the ReLU-like activations' backward replaced by the rule.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import deconvnet
from deconvnet import cli
from deconvnet.models import class_index
from test_families import check_layers

timm = pytest.importorskip("timm")

CAT = Path(__file__).resolve().parent.parent / "assets" / "cat.jpg"

# family (timm module): (smallest member, input side, a stage, the first convolution)
FAMILIES = {
    "resnet": ("resnet18", 64, "layer4", "conv1"),
    "mobilenetv3": ("mobilenetv3_small_050", 64, "blocks.5", "conv_stem"),
    "efficientnet": ("efficientnet_b0", 64, "blocks.6", "conv_stem"),
    "convnext": ("convnext_atto", 64, "stages.3", "stem.0"),
    "regnet": ("regnetx_002", 64, "s4", "stem.conv"),
    "mobilenetv2": ("mobilenetv2_050", 64, "blocks.6", "conv_stem"),
    "dla": ("dla46_c", 64, "level5", "base_layer.0"),
    "vovnet": ("ese_vovnet19b_slim_dw", 64, "stages.3", "stem.0.conv"),
    "ghostnet": ("ghostnet_050", 64, "blocks.9", "conv_stem"),
    "mixnet": ("mixnet_s", 64, "blocks.5", "conv_stem"),
    "repvgg": ("repvgg_a0", 64, "stages.3", "stem.conv_kxk.conv"),
    "lcnet": ("lcnet_050", 64, "blocks.5", "conv_stem"),
    "densenet": ("densenet121", 64, "features.denseblock4", "features.conv0"),
    "rexnet": ("rexnet_100", 64, "features.16", "stem.conv"),
}


def timm_model(name: str) -> nn.Module:
    """timm's random model through deconvnet's loader, with varied norms."""
    return varied_norms(deconvnet.load(f"timm:{name}", weights="random").model)


def varied_norms(model: nn.Module) -> nn.Module:
    """``model`` with batch norms that are not the identity (timm zero-initialises some blocks' last
    norm, which would cut their residual branch; fresh running statistics are 0 and 1)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


# densenet and mixnet take several times longer than the others: the slow test below covers them
@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ("densenet", "mixnet")])
def test_timm_family_projects_like_autograd_at_its_last_stage(family):
    name, _, stage, _ = FAMILIES[family]
    check_layers(timm_model(name), 32, [stage])  # every rule; the full check below is slow


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_timm_family_projects_like_autograd_at_logits_a_stage_and_the_first_conv(family):
    name, size, stage, first_conv = FAMILIES[family]
    model = timm_model(name)
    assert isinstance(model.get_submodule(first_conv), nn.Conv2d)
    check_layers(model, size, ["logits", stage, first_conv])


def test_timm_projects_like_autograd_at_logits_and_the_first_conv():
    name, _, _, first_conv = FAMILIES["mobilenetv3"]  # hard-swish, squeeze-excitation gates
    check_layers(timm_model(name), 32, ["logits", first_conv])


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "vit_tiny_patch16_224", "inception_v3",
                                  "convnext_tiny.fb_in22k", "resnet50d.ra4_e3600_r224_in1k"])
def test_the_transform_is_timms_create_transform_of_its_data_config(name):
    """Sizes, crop_pct, bicubic or bilinear interpolation and mean/std as timm resolves them, on a photo."""
    loaded = deconvnet.load(f"timm:{name}", weights="random")
    config = timm.data.resolve_model_data_config(loaded.model)
    expected = timm.data.create_transform(**config)
    photo = Image.open(CAT).convert("RGB")
    # the same PIL resampling and the same float32 arithmetic ((x / 255 - mean) / std)
    torch.testing.assert_close(loaded.transform(photo), expected(photo), rtol=0, atol=1e-5)
    assert loaded.transform.interpolation == config["interpolation"]


def test_imagenet_class_names_select_logits_and_other_label_sets_have_none():
    loaded = deconvnet.load("timm:resnet18", weights="random")
    assert len(loaded.categories) == 1000 and class_index("tabby", loaded.categories) == 281
    assert class_index("Golden Retriever", loaded.categories) == 207
    assert deconvnet.load("timm:convnext_atto.d2_in1k", weights="random").categories == loaded.categories
    assert deconvnet.load("timm:convnext_tiny.fb_in22k", weights="random").categories is None  # 21841 classes


def test_a_class_name_selects_its_logit(tmp_path):
    result = deconvnet.visualize(CAT, tmp_path / "out.png", layer="logits", channel="tabby",
                                 model="timm:mobilenetv3_small_050", weights="random", mode="backprop")
    loaded = deconvnet.load("timm:mobilenetv3_small_050", weights="random")
    with torch.no_grad():
        logit = loaded.model(loaded.transform(Image.open(CAT))[None])[0, 281]
    assert result.unit.channel == 281 and result.unit.value == pytest.approx(float(logit), rel=1e-5)


def test_a_local_checkpoint_loads_safely(tmp_path):
    from safetensors.torch import save_file

    random = deconvnet.load("timm:lcnet_050", weights="random")
    trained = {k: v + 0.01 if v.is_floating_point() else v for k, v in random.model.state_dict().items()}
    save_file(trained, tmp_path / "w.safetensors")
    loaded = deconvnet.load("timm:lcnet_050", weights=tmp_path / "w.safetensors")
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in trained.items())
    assert loaded.weights == str(tmp_path / "w.safetensors") and loaded.name == "timm:lcnet_050"


def test_layers_lists_a_timm_model_with_its_logits(capsys):
    assert cli.main(["layers", "--model", "timm:resnet18", "--weights", "random", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "layer4.1.conv2" in out and any(line.split()[:2] == ["fc", "logits"] for line in out.splitlines())


def test_models_lists_the_families_with_an_example(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "timm:NAME" in out and "--model timm:resnet50" in out and "hf:ID_OR_FOLDER" in out


def one_line_error(argv, capsys) -> str:
    capsys.readouterr()  # only what the command prints (not a setup's progress bars)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("deconv: error: ") and "Traceback" not in err, err
    return err


def test_an_unknown_timm_name_lists_close_matches(capsys):
    error = one_line_error(["layers", "--model", "timm:resnet5O", "--weights", "random"], capsys)
    assert "unknown timm model 'resnet5O'" in error and "resnet50" in error
    error = one_line_error(["layers", "--model", "timm:resnet18.no_such_tag", "--weights", "random"], capsys)
    assert "resnet18.a1_in1k" in error


def test_pretrained_weights_without_network_say_how_to_use_weights(monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network, and no retries
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    error = one_line_error(["layers", "--model", "timm:resnet18"], capsys)
    assert "--weights FILE" in error and "--weights random" in error


@pytest.mark.parametrize("package, model, extra", [("timm", "timm:resnet18", "timm"),
                                                   ("transformers", "hf:microsoft/resnet-50", "hf")])
def test_a_missing_package_says_which_extra_to_install(package, model, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: importing it raises ImportError
    assert f"pip install 'deconvnet[{extra}]'" in one_line_error(["layers", "--model", model], capsys)


def test_importing_deconvnet_and_its_models_or_the_cli_imports_neither_timm_nor_transformers():
    code = ("import sys, deconvnet, deconvnet.models, deconvnet.cli\n"
            "deconvnet.cli.build_parser().format_help()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'transformers')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
