"""deconvnet.channels: the one channel type of the API, against hand-written expectations."""

from __future__ import annotations

import numpy as np
import pytest

from deconvnet.channels import ClassChannels, Strongest, channel_numbers, select_channels
from deconvnet.errors import DeconvError


def test_a_selection_picks_the_channels_written():
    assert select_channels([7, 0, 7, 3], 8, "conv1") == [0, 3, 7]
    assert select_channels(range(3), 8) == [0, 1, 2]
    assert select_channels("all", 4) == [0, 1, 2, 3]
    assert select_channels([np.int64(2)], 4) == [2]
    assert select_channels([5, 1, 5], 8, ordered=True) == [5, 1, 5]
    assert select_channels(ClassChannels("Lynx", 0), 3, categories=["tiger", "tabby", "lynx"]) == [0, 2]


@pytest.mark.parametrize("value, facts", [
    (5, ["[5]", "range(5)"]),
    (np.int64(5), ["[5]", "range(5)"]),
    ("0-15,40", ["'0-15,40'", "range(16)", "CLI"]),
    ("3", ["'3'", "[12]"]),
    (None, ["None", "'all'"]),
    ([1, "tabby"], ["'tabby'", "ClassChannels"]),
    ([1.5], ["1.5"]),
])
def test_what_is_not_a_selection_is_a_type_error_that_says_what_to_pass(value, facts):
    with pytest.raises(TypeError) as raised:
        channel_numbers(value)
    for fact in facts:
        assert fact in str(raised.value)


@pytest.mark.parametrize("value, count, message", [
    ([512], 512, "channel 512 is out of range: layer conv5_3 has 512 channels: valid 0-511"),
    ([3, 900, 600], 512, "channel 900 is out of range: layer conv5_3 has 512 channels: valid 0-511"),
    ([-1], 512, "channel -1 is negative"),
    ([], 512, "at least one channel"),
    (Strongest(8), 512, "layer conv5_3 has 512 channels: valid 0-511"),
])
def test_a_selection_outside_the_layer_names_its_count_and_range(value, count, message):
    with pytest.raises(DeconvError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_channels(value, count, "conv5_3")


def test_the_selectors_refuse_what_selects_nothing():
    with pytest.raises(ValueError, match="k >= 1"):
        Strongest(0)
    with pytest.raises(ValueError, match="one or more class names"):
        ClassChannels()


@pytest.mark.parametrize("task", ["top9", "microscope", "evolution"])
def test_a_task_refuses_an_int_before_the_model_loads(task, monkeypatch, tmp_path):
    import deconvnet.dataset.runner as runner
    import deconvnet.models.loading as loading

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the channels were checked")

    monkeypatch.setattr(loading, "load", never)  # resolve_model's
    monkeypatch.setattr(runner.Job, "__init__", never)
    if task == "top9":
        from deconvnet.tasks.top9.compute import top9 as call
        run = lambda: call(tmp_path, tmp_path / "out", layers=["conv1"], channels=5)  # noqa: E731
    elif task == "microscope":
        from deconvnet.tasks.microscope import microscope as call
        run = lambda: call(tmp_path, tmp_path / "out", channels=5)  # noqa: E731
    else:
        from deconvnet.tasks.evolution import evolution as call
        run = lambda: call([tmp_path / "a.pt"], tmp_path, tmp_path / "out", layer="conv1", channels=5)  # noqa: E731
    with pytest.raises(TypeError, match=r"pass \[5\] for that channel or range\(5\) for the first 5"):
        run()


def test_the_channel_type_loads_no_torch(run_python, tmp_path):
    """The CLI's grammar builds selections while parsing, which must not wait for torch."""
    script = tmp_path / "probe.py"
    script.write_text("import sys, deconvnet.channels, deconvnet.cli.grammar\nprint('torch' in sys.modules)\n")
    done = run_python(script)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
