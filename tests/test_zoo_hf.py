"""Hugging Face image classifiers (``hf:FOLDER``): projections through their ModelOutput equal autograd
with the mode's rule, the transform is the image processor's, id2label names select logits, and
the command line reports a bad folder, an offline hub id or a missing extra in one line.

Every model is a tiny random configuration saved with save_pretrained to a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import deconvnet
from deconvnet import cli
from deconvnet.models import class_index
from test_families import check_layers
from test_zoo_timm import one_line_error, varied_norms

transformers = pytest.importorskip("transformers")

CAT = Path(__file__).resolve().parent.parent / "assets" / "cat.jpg"
LABELS = {0: "tabby", 1: "golden retriever", 2: "fire truck"}


# family: (configuration, classifier, a stage, the first convolution)
ARCHITECTURES = {
    "resnet": ("ResNetConfig", "ResNetForImageClassification", "resnet.encoder.stages.3",
               "resnet.embedder.embedder.convolution",
               {"embedding_size": 8, "hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1]}),
    "convnext": ("ConvNextConfig", "ConvNextForImageClassification", "convnext.encoder.stages.3",
                 "convnext.embeddings.patch_embeddings", {"hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1]}),
    "regnet": ("RegNetConfig", "RegNetForImageClassification", "regnet.encoder.stages.3",
               "regnet.embedder.embedder.convolution",
               {"embedding_size": 8, "hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "groups_width": 8}),
    "mobilenet_v2": ("MobileNetV2Config", "MobileNetV2ForImageClassification", "mobilenet_v2.layer.15",
                     "mobilenet_v2.conv_stem.first_conv.convolution", {"depth_multiplier": 0.35, "image_size": 64}),
    "efficientnet": ("EfficientNetConfig", "EfficientNetForImageClassification", "efficientnet.encoder.blocks.6",
                     "efficientnet.embeddings.convolution",
                     {"width_coefficient": 0.25, "depth_coefficient": 0.2, "image_size": 64, "hidden_dim": 320}),
}


def tiny(family: str):
    """A tiny random classifier of ``family``, with (a stage, the first convolution)."""
    config_class, model_class, stage, first_conv, sizes = ARCHITECTURES[family]
    config = getattr(transformers, config_class)(num_labels=3, id2label=LABELS,
                                                 label2id={v: k for k, v in LABELS.items()}, **sizes)
    return getattr(transformers, model_class)(config), stage, first_conv


FAMILIES = list(ARCHITECTURES)


def saved(folder: Path, family: str = "resnet", processor=None) -> Path:
    """``family``'s tiny model and an image processor, as save_pretrained writes a fine-tuned model."""
    torch.manual_seed(0)
    model, _, _ = tiny(family)
    varied_norms(model)
    with torch.no_grad():  # a top class that scores above 0, so that its deconvnet projection is not empty
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].bias.add_(2.0)
    model.save_pretrained(folder)
    (processor or transformers.ConvNextImageProcessor(size={"shortest_edge": 64})).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_family_projects_like_autograd_at_logits_a_stage_and_the_first_conv(family, tmp_path):
    loaded = deconvnet.load(f"hf:{saved(tmp_path, family)}")
    _, stage, first_conv = tiny(family)
    assert loaded.categories == list(LABELS.values())
    check_layers(loaded.model, 64, ["logits", stage, first_conv])


def test_a_model_output_names_its_logits_and_its_other_tensors_by_field(tmp_path):
    model = deconvnet.load(f"hf:{saved(tmp_path)}").model
    x = torch.rand(1, 3, 64, 64)
    with deconvnet.Deconvnet(model) as dn:
        scores = dn.activations(x, ["logits"])["logits"]
        assert dn.layer("logits").name == "classifier.1"
    # the same layer; activations run channels-last, whose float32 sums may differ in the last bit
    torch.testing.assert_close(scores, model(x).logits, rtol=1e-5, atol=1e-6)


PROCESSORS = {
    "convnext crop_pct": lambda t: t.ConvNextImageProcessor(size={"shortest_edge": 224}),
    "convnext squash at 384": lambda t: t.ConvNextImageProcessor(size={"shortest_edge": 384}),
    "efficientnet include_top": lambda t: t.EfficientNetImageProcessor(size={"height": 289, "width": 311}),
    "efficientnet rescale_offset": lambda t: t.EfficientNetImageProcessor(rescale_offset=True),
    "mobilenet_v2 odd crop": lambda t: t.MobileNetV2ImageProcessor(size={"shortest_edge": 255},
                                                                  crop_size={"height": 223, "width": 223}),
    "bit clip mean": lambda t: t.BitImageProcessor(),
    "vit squash bilinear": lambda t: t.ViTImageProcessor(),
}


@pytest.mark.parametrize("kind", list(PROCESSORS))
def test_the_transform_is_the_image_processors_pixel_values(kind, tmp_path):
    processor = PROCESSORS[kind](transformers)
    loaded = deconvnet.load(f"hf:{saved(tmp_path, processor=processor)}")
    photo = Image.open(CAT)
    expected = transformers.AutoImageProcessor.from_pretrained(tmp_path)(images=photo, return_tensors="pt")
    # the processor fuses rescale and normalize ((x - 255 mean) / (255 std)): float32 rounding only
    torch.testing.assert_close(loaded.transform(photo), expected["pixel_values"][0], rtol=0, atol=1e-5)
    picture = loaded.transform.to_uint8(loaded.transform(photo))
    resized = expected["pixel_values"][0] * torch.tensor(processor.image_std).view(3, 1, 1)
    assert picture.shape[:2] == tuple(resized.shape[1:])


def test_a_class_name_from_id2label_selects_its_logit(tmp_path):
    loaded = deconvnet.load(f"hf:{saved(tmp_path)}")
    index = class_index("Golden Retriever", loaded.categories)
    assert index == 1
    result = deconvnet.visualize(CAT, tmp_path / "out.png", layer="logits", channel="golden retriever",
                                 model=f"hf:{tmp_path}", mode="guided")
    x = loaded.transform(Image.open(CAT))[None]
    with torch.no_grad():
        logit = loaded.model(x).logits[0, 1]
    assert result.unit.channel == 1 and result.unit.value == pytest.approx(float(logit), rel=1e-5)


def test_random_and_file_weights_use_the_folders_architecture(tmp_path):
    from safetensors.torch import save_file

    folder = saved(tmp_path / "model")
    trained = deconvnet.load(f"hf:{folder}").model
    state = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, state)
    from_file = deconvnet.load(f"hf:{folder}", weights=state)
    random = deconvnet.load(f"hf:{folder}", weights="random")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(from_file.model(x).logits, trained(x).logits, rtol=0, atol=0)
        assert not torch.equal(random.model(x).logits, trained(x).logits)
    assert from_file.weights == str(state) and len(from_file.weights_sha256) == 64 and random.weights == "random"


def test_every_command_with_model_runs_on_a_saved_folder(tmp_path, capsys):
    folder = saved(tmp_path / "model")
    assert cli.main(["layers", "--model", f"hf:{folder}"]) == 0
    assert "logits" in capsys.readouterr().out
    assert cli.main(["visualize", str(CAT), "--layer", "logits", "--channel", "tabby", "--model", f"hf:{folder}",
                     "-o", str(tmp_path / "v.png")]) == 0
    assert cli.main(["occlusion", str(CAT), "--class", "fire truck", "--model", f"hf:{folder}", "--stride", "32",
                     "-o", str(tmp_path / "o.png")]) == 0
    assert (tmp_path / "v.png").stat().st_size > 0 and (tmp_path / "o.png").stat().st_size > 0


def test_a_folder_that_is_not_a_model_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    assert "has no config.json" in one_line_error(["layers", "--model", f"hf:{tmp_path}"], capsys)
    (tmp_path / "config.json").write_text('{"hello": 1}')
    assert "not an image-classification model" in one_line_error(["layers", "--model", f"hf:{tmp_path}"], capsys)
    assert "no such folder" in one_line_error(["layers", "--model", f"hf:{tmp_path / 'missing'}"], capsys)


def test_a_folder_without_its_image_processor_says_how_to_add_it(tmp_path, capsys):
    folder = saved(tmp_path)
    (folder / "preprocessor_config.json").unlink()
    assert "save_pretrained" in one_line_error(["layers", "--model", f"hf:{folder}"], capsys)


def test_a_hub_id_without_network_is_one_line(monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network, and no retries
    error = one_line_error(["layers", "--model", "hf:deconvnet-tests/no-such-model"], capsys)
    assert "Hugging Face hub" in error and "--model hf:FOLDER" in error
