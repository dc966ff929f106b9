"""The command grammar: every command's parser over every form of channels, layers, modes, numbers,
devices, models and outputs, against hand-written expectations; bad forms end in one line, exit 2.

Parse only (``build_parser().parse_args``): no model is loaded, so the whole file runs in a second.
The wiring to the APIs is checked with stand-ins that record their keywords.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

import deconvnet.cli
from deconvnet.cli import COMMANDS, build_parser, main
from deconvnet.cli.grammar import Channels, figure_output
from deconvnet.errors import DeconvError

# Each command with its required arguments, except the option under test where it is required too.
REQUIRED = {
    "visualize": ["img.jpg", "--layer", "conv5_3"],
    "occlusion": ["img.jpg"],
    "serve": [],
    "top9": ["photos", "-o", "out", "--layer", "conv5_3"],
    "microscope": ["photos", "-o", "site"],
    "evolution": ["checkpoints", "photos", "--layer", "conv2"],
    "sanity": ["photos", "-o", "out", "--layer", "logits", "--channel", "3"],
    "filters": [],
    "invariance": ["img.jpg"],
    "correspondence": ["parts.json", "--layer", "conv2"],
    "featurevis": ["--layer", "conv5_3", "--channel", "12"],
    "layers": [],
    "models": [],
}
LAYER_REQUIRED = {"visualize", "top9", "evolution", "sanity", "correspondence", "featurevis"}
MANY_LAYERS = {"top9", "microscope", "invariance", "correspondence"}
ONE_LAYER = {"visualize", "occlusion", "evolution", "sanity", "filters", "featurevis"}


def without(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value."""
    if option not in argv:
        return argv
    at = argv.index(option)
    return argv[:at] + argv[at + 2:]


def parse(command: str, *argv: str, drop: str = ""):
    return build_parser().parse_args([command, *without(REQUIRED[command], drop), *argv])


def command_parser(command: str):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return subparsers.choices[command]


def refused(capsys, command: str, *argv: str, drop: str = "") -> str:
    """The one error line of a bad form (exit status 2)."""
    with pytest.raises(SystemExit) as exit:
        parse(command, *argv, drop=drop)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("deconv: error: ") and err.rstrip().endswith(f"(see deconv {command} --help)"), err
    return err


def test_every_command_is_listed_once_in_its_group_with_one_line():
    parser = build_parser()
    listed = [name for _, names in COMMANDS for name in names]
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert sorted(listed) == sorted(subparsers.choices) == sorted(REQUIRED)
    text = parser.format_help()
    groups = [line for line in text.splitlines() if line.startswith("  ") and line.rstrip().endswith(":")]
    assert [g.strip() for g in groups] == ["single image:", "in the browser:", "image set:", "analyses:", "the model:"]
    for name in listed:
        (line,) = [line for line in text.splitlines() if line.startswith(f"    {name} ")]
        assert len(line.split(maxsplit=1)[1]) > 10  # a description on the same line


def test_an_unknown_command_points_at_deconv_help(capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["visualise"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "invalid choice: 'visualise'" in err
    assert err.rstrip().endswith("(see deconv --help)") and "deconv deconv" not in err


# ---------------------------------------------------------------- channels

FORMS = {  # what each form means, written out by hand
    "12": Channels("12", (12,)),
    "12,40,7": Channels("12,40,7", (12, 40, 7)),
    "0-3,40": Channels("0-3,40", (0, 1, 2, 3, 40)),
    "all": Channels("all", all=True),
    "tabby": Channels("tabby", ("tabby",)),
    "top1": Channels("top1", top=1),
    "top8": Channels("top8", top=8),
}
ACCEPTS = {  # the forms each command can do
    "visualize": {"12", "12,40,7", "0-3,40", "tabby", "top1", "top8"},
    "occlusion": {"12"},
    # over an image set: numbers or all; topN and class names pick channels by one image
    "top9": {"12", "12,40,7", "0-3,40", "all"},
    "microscope": {"12", "12,40,7", "0-3,40", "all"},
    "evolution": {"12", "12,40,7", "0-3,40", "all"},
    "sanity": {"12", "tabby", "top1"},
}


@pytest.mark.parametrize("option", ["--channel", "--channels"])
@pytest.mark.parametrize("command", sorted(ACCEPTS))
def test_channel_forms(command, option, capsys):
    for form, expected in FORMS.items():
        if form in ACCEPTS[command]:
            assert parse(command, option, form, drop="--channel").channel == expected, (command, form)
        else:
            err = refused(capsys, command, option, form, drop="--channel")
            assert "argument --channel/--channels: " + command in err, err


@pytest.mark.parametrize("command", sorted(ACCEPTS))
@pytest.mark.parametrize("form, fact", [
    ("1,,2", "cannot read channel spec '1,,2': an empty item"),
    ("12,", "expected a channel or a list such as 12, 12,40,7, 0-15,40, all"),
    ("5-2", "channel range '5-2' runs backwards: write it as '2-5'"),
    ("top0", "'top0' ranks no channel"),
    ("3,all", "'all' among other channels"),
    ("top2,5", "'top2' among other channels"),
])
def test_bad_channel_forms(command, form, fact, capsys):
    assert fact in refused(capsys, command, "--channel", form, drop="--channel")


def test_channel_defaults():
    assert parse("top9").channel == Channels("all", all=True)
    assert parse("microscope").channel.all
    assert parse("evolution").channel == Channels("0-7", tuple(range(8)))
    assert parse("visualize").channel is None and parse("occlusion").channel is None


def test_a_negative_channel_reaches_the_api_which_names_the_range():
    assert parse("visualize", "--channel", "-1").channel.items == (-1,)


# ---------------------------------------------------------------- layers

@pytest.mark.parametrize("command", sorted(MANY_LAYERS))
@pytest.mark.parametrize("argv", [["--layer", "conv4_3,conv5_3"], ["--layer", "conv4_3", "--layer", "conv5_3"],
                                  ["--layers", "conv4_3, conv5_3"], ["--layer", "conv4_3,conv5_3,conv4_3"]])
def test_several_layers(command, argv):
    assert parse(command, *argv, drop="--layer").layer == ["conv4_3", "conv5_3"]


@pytest.mark.parametrize("command", sorted(ONE_LAYER))
def test_one_layer(command, capsys):
    assert parse(command, "--layers", "conv2", drop="--layer").layer == "conv2"
    for argv in (["--layer", "conv2,conv3"], ["--layer", "conv2", "--layer", "conv3"]):
        err = refused(capsys, command, *argv, drop="--layer")
        assert f"{command} takes one layer, received 2 (conv2, conv3)" in err


@pytest.mark.parametrize("command", sorted(MANY_LAYERS | ONE_LAYER))
def test_an_empty_layer_item(command, capsys):
    assert "empty layer in 'conv2,,conv3'" in refused(capsys, command, "--layer", "conv2,,conv3", drop="--layer")


def test_layer_defaults_and_requirements(capsys):
    assert parse("microscope").layer == "all" and parse("invariance").layer is None
    assert parse("occlusion").layer is None and parse("filters").layer is None
    for command in sorted(LAYER_REQUIRED):
        assert "the following arguments are required: --layer" in refused(capsys, command, drop="--layer")


# ---------------------------------------------------------------- modes

MANY_MODES = {"visualize": None, "microscope": ["deconvnet"], "sanity": ["deconvnet", "guided", "backprop"],
              "top9": ["deconvnet"]}
ONE_MODE = {"evolution": "deconvnet"}


@pytest.mark.parametrize("command", sorted(MANY_MODES))
def test_several_modes(command):
    assert parse(command).mode == MANY_MODES[command]
    assert parse(command, "--mode", "guided").mode == ["guided"]
    assert parse(command, "--mode", "deconvnet,guided,backprop").mode == ["deconvnet", "guided", "backprop"]
    assert parse(command, "--modes", "backprop", "--mode", "guided").mode == ["backprop", "guided"]


@pytest.mark.parametrize("command", sorted(ONE_MODE))
def test_one_mode(command, capsys):
    assert parse(command).mode == ONE_MODE[command]
    assert parse(command, "--modes", "guided").mode == "guided"
    assert f"{command} takes one mode, received 2 (deconvnet, guided)" in refused(capsys, command, "--mode",
                                                                                  "deconvnet,guided")


@pytest.mark.parametrize("command", sorted({**MANY_MODES, **ONE_MODE}))
@pytest.mark.parametrize("form, fact", [
    ("fancy", "unknown mode 'fancy': expected one of deconvnet, guided, backprop"),
    ("guided,fancy", "unknown mode 'fancy'"),
    ("guided,", "empty mode in 'guided,'"),
    ("", "empty mode in ''"),
])
def test_bad_modes(command, form, fact, capsys):
    err = refused(capsys, command, "--mode", form)
    assert "argument --mode/--modes: " in err and fact in err


# ---------------------------------------------------------------- numbers, devices, models

DATASET = ["top9", "microscope", "evolution", "sanity"]
RUNNER = ["top9", "microscope", "evolution"]  # the dataset runner's commands: sanity has no --workers nor --device
BATCHED = [*DATASET, "occlusion", "filters", "correspondence"]
IMAGE_COMMANDS = {"top9": 0, "microscope": 0, "evolution": 1, "sanity": 0, "invariance": 0, "filters": None}


@pytest.mark.parametrize("command", BATCHED)
def test_batch_size(command, capsys):
    assert parse(command, "--batch-size", "3").batch_size == 3
    for bad in ("0", "-1", "x", "1.5"):
        assert f"--batch-size must be a whole number of at least 1, received '{bad}'" in refused(
            capsys, command, f"--batch-size={bad}")


@pytest.mark.parametrize("command", RUNNER)
def test_workers_limit_and_device(command, capsys):
    args = parse(command, "--workers", "0", "--limit", "5", "--device", "cuda:1")
    assert (args.workers, args.limit, args.device) == (0, 5, "cuda:1")
    assert parse(command, "--limit", "all").limit is None
    assert parse(command, "--device", "cuda").device == "cuda" and parse(command).device == "cpu"
    assert "--workers must be a whole number of at least 0, received '-1'" in refused(capsys, command, "--workers=-1")
    for bad in ("0", "x"):
        err = refused(capsys, command, "--limit", bad)
        assert f"--limit must be a whole number of at least 1, or all, received '{bad}'" in err
    assert "unknown device 'gpu': expected 'cpu' or 'cuda' (or 'cuda:N')" in refused(capsys, command, "--device",
                                                                                      "gpu")


def test_dataset_defaults():
    assert [parse(c).batch_size for c in DATASET] == [32, 8, 32, 8]
    assert [parse(c).workers for c in RUNNER] == [2, 2, 0]
    assert [parse(c).limit for c in DATASET] == [None, None, None, 16]


def test_sanity_offers_no_workers_and_no_device(capsys):
    """It decodes its first 16 images in this process and computes on the CPU, so it does not advertise either."""
    help_text = command_parser("sanity").format_help()
    assert "--workers" not in help_text and "--device" not in help_text and "--limit" in help_text
    for option in ("--workers", "--device"):
        assert "unrecognized arguments" in refused(capsys, "sanity", option, "1")


@pytest.mark.parametrize("command", ["top9", "microscope"])
def test_k_is_a_whole_number_from_one(command, capsys):
    assert parse(command).k == 9 and parse(command, "--k", "3").k == 3
    for bad in ("0", "-2", "x", "1.5"):
        assert f"--k must be a whole number of at least 1, received '{bad}'" in refused(capsys, command, f"--k={bad}")


@pytest.mark.parametrize("command", sorted(IMAGE_COMMANDS))
def test_every_image_command_takes_several_files_folders_and_list_files(command):
    at = IMAGE_COMMANDS[command]
    argv = list(REQUIRED[command])
    if at is not None:
        del argv[at]
    sources = ["photos/", "more.txt", "cat.jpg"]
    args = build_parser().parse_args([command, *argv[:at], *sources, *argv[at:]] if at is not None
                                     else [command, *argv, *sources])
    assert args.images == sources


def test_the_positional_images_are_declared_once():
    """One declaration (cli/grammar.py), so every image command reads the same forms with the same help."""
    cli = Path(deconvnet.cli.__file__).parent
    declarations = {path.name: path.read_text().count('add_argument("images"') for path in cli.glob("*.py")}
    assert {name: n for name, n in declarations.items() if n} == {"grammar.py": 1}
    for command in IMAGE_COMMANDS:
        (images,) = [action for action in command_parser(command)._actions if action.dest == "images"]
        assert "list files" in images.help and images.metavar == "IMAGES"


@pytest.mark.parametrize("text, value", [("99.5", 99.5), ("1e-3", 0.001), ("100", None)])
def test_percentile(text, value):
    assert parse("visualize", "--percentile", text).percentile == value


@pytest.mark.parametrize("text", ["150", "-5", "0", "nan", "x"])
def test_percentile_out_of_range(text, capsys):
    err = refused(capsys, "visualize", f"--percentile={text}")
    assert "percentile must be in (0, 100]" in err and "received " in err


@pytest.mark.parametrize("command", sorted(set(REQUIRED) - {"models"}))
def test_model_and_weights(command):
    assert (parse(command).model, parse(command).weights) == ("vgg16-hed", None)
    args = parse(command, "--model", "alexnet", "--weights", "random")
    assert (args.model, args.weights) == ("alexnet", "random")


# ---------------------------------------------------------------- output

FOLDER_OUTPUT = {"top9": None, "microscope": None, "sanity": None, "evolution": "evolution",
                 "correspondence": "correspondence"}
FIGURE_OUTPUT = {"visualize": None, "occlusion": None, "filters": None, "invariance": None}


@pytest.mark.parametrize("command", sorted({**FOLDER_OUTPUT, **FIGURE_OUTPUT}))
def test_output(command):
    assert parse(command, "-o", "a/b/c").output == "a/b/c"
    assert parse(command, "--output", "x.png", drop="-o").output == "x.png"
    if "-o" not in REQUIRED[command]:
        assert parse(command).output == {**FOLDER_OUTPUT, **FIGURE_OUTPUT}[command]


def test_a_figure_output_names_a_file_or_a_folder(tmp_path):
    (tmp_path / "figures").mkdir()
    default = "cat_conv5_3_c12.png"
    assert figure_output(None, default) == Path(default)
    assert figure_output(str(tmp_path / "figures"), default) == tmp_path / "figures" / default
    assert figure_output(f"{tmp_path}/new/", default) == tmp_path / "new" / default
    assert figure_output(str(tmp_path / "new" / "fig.pdf"), default) == tmp_path / "new" / "fig.pdf"


# ---------------------------------------------------------------- the options reach the APIs

class Recorded(DeconvError):
    """Raised by the stand-ins once they have the keywords: main reports it and returns 2."""


def _stand_in(command: str, *keywords: str):
    """A function with the signature ``command``'s API would have with ``keywords``: it records its call."""
    calls: list[dict] = []
    names = ", ".join(f"{name}=None" for name in (*PASSED[command], *keywords))
    source = f"def api(*args, {names}):\n    calls.append(dict(locals()))\n    raise Recorded('recorded')"
    namespace = {"calls": calls, "Recorded": Recorded}
    exec(source, namespace)  # a real signature, which the command reads to pass its options
    return namespace["api"], calls


DATASET_RUNS = {
    "top9": ("deconvnet.tasks.top9.compute", "top9"),
    "microscope": ("deconvnet.tasks.microscope", "microscope"),
    "evolution": ("deconvnet.tasks.evolution", "evolution"),
    "sanity": ("deconvnet.tasks.sanity.files", "sanity"),
}
PASSED = {  # the keywords each command passes besides the dataset options
    "top9": ["layers", "channels", "k", "model", "weights", "mode", "restart"],
    "microscope": ["layers", "channels", "modes", "k", "labels", "model", "weights", "restart"],
    "evolution": ["layer", "channels", "model", "mode", "restart"],
    "sanity": ["layer", "channel", "model", "weights", "modes", "grouping", "seed", "independently"],
}


def _replace(command: str, monkeypatch, *keywords: str) -> list[dict]:
    module, name = DATASET_RUNS[command]
    __import__(module)
    api, calls = _stand_in(command, *keywords)
    monkeypatch.setattr(sys.modules[module], name, api)
    return calls


@pytest.mark.parametrize("command", DATASET)
def test_dataset_options_are_passed_as_keywords(command, monkeypatch, capsys):
    keywords = ["batch_size", "limit"] if command == "sanity" else ["device", "batch_size", "workers", "limit"]
    calls = _replace(command, monkeypatch, *keywords)
    given = {"device": ["--device", "cuda:0"], "batch_size": ["--batch-size", "3"], "workers": ["--workers", "1"],
             "limit": ["--limit", "4"]}
    argv = [command, *REQUIRED[command], *(word for keyword in keywords for word in given[keyword])]
    assert main(argv) == 2 and "recorded" in capsys.readouterr().err
    (call,) = calls
    assert {k: call[k] for k in keywords} == {k: v for k, v in
                                              {"device": "cuda:0", "batch_size": 3, "workers": 1, "limit": 4}.items()
                                              if k in keywords}


@pytest.mark.parametrize("command", RUNNER)
def test_an_option_the_api_does_not_take_is_refused_in_one_line(command, monkeypatch, capsys):
    calls = _replace(command, monkeypatch, "batch_size")
    assert main([command, *REQUIRED[command]]) == 2 and len(calls) == 1  # defaults: simply not passed
    assert "device" not in calls[0] and "recorded" in capsys.readouterr().err
    assert main([command, *REQUIRED[command], "--device", "cuda"]) == 2 and len(calls) == 1
    assert capsys.readouterr().err == f"deconv: error: {command} does not take --device yet; leave it out\n"


def test_the_channels_reach_the_dataset_apis_as_numbers(monkeypatch, capsys):
    top9_calls, site_calls = _replace("top9", monkeypatch), _replace("microscope", monkeypatch)
    main(["top9", *REQUIRED["top9"], "--channel", "0-2,40"])
    main(["microscope", *REQUIRED["microscope"], "--channels", "7,3"])
    main(["microscope", *REQUIRED["microscope"]])
    assert [call["channels"] for call in top9_calls + site_calls] == [[0, 1, 2, 40], [7, 3], "all"]


@pytest.mark.parametrize("command", ["microscope", "top9", "evolution"])
@pytest.mark.parametrize("form, fact", [("top8", "does not rank channels"),
                                        ("tabby", "takes channel numbers, not a name such as 'tabby'")])
def test_a_dataset_command_refuses_top_and_class_names_before_the_model_loads(command, form, fact, tmp_path,
                                                                             monkeypatch, capsys):
    """The real command, with real image files: only the model loader is replaced, so that reaching it fails."""
    import deconvnet.dataset.runner as runner
    import deconvnet.models.loading as loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the channels were checked")

    monkeypatch.setattr(loading, "load", no_loading)  # resolve_model's
    monkeypatch.setattr(runner, "load", no_loading)  # the dataset runner's
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        Image.new("RGB", (32, 32), (40 * index, 90, 200)).save(photos / f"{index}.png")
    where = {"microscope": [str(photos), "-o", str(tmp_path / "site"), "--layer", "conv5_3"],
             "top9": [str(photos), "-o", str(tmp_path / "out"), "--layer", "conv5_3"],
             "evolution": [str(tmp_path), str(photos), "--layer", "conv5_3", "-o", str(tmp_path / "evolution")]}
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit, as the deconv script sees it
        main([command, *where[command], "--channel", form])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fact in err and "0-15,40 or all" in err, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photos"]  # nothing written


def test_the_readme_command_lines_parse():  # and those of every page of the docs site
    root = Path(__file__).resolve().parents[1]
    pages = [root / name for name in ("README.md", "ARCHITECTURE.md", "CHANGELOG.md")]
    pages += sorted((root / "docs").rglob("*.md"))
    text = "\n".join(page.read_text() for page in pages).replace("\\\n", " ")
    lines = [line.split(" #")[0].split() for line in text.splitlines() if line.startswith("deconv ")]
    assert len(pages) >= 20 and len(lines) >= 50
    for words in lines:
        args = build_parser().parse_args(words[1:])
        assert args.command == words[1]
