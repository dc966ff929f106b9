"""examples/tutorial.py runs end to end as a script (CI also runs it directly)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 15 s of CPU; .ci/run runs the tutorial on every build anyway
def test_the_tutorial_runs_and_saves_every_picture(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "tutorial.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = sorted(path.name for path in tmp_path.glob("*.png"))
    assert saved == sorted([*(f"1-conv5_3-channel12-{mode}.png" for mode in ("deconvnet", "guided", "backprop")),
                            "2-conv5_3-channel12-three-rules.png", "3-conv4_3-strongest-guided.png",
                            "4-patch.png", "4-projection.png", "5-top9-channel0.png", "5-top9-channel1.png"])
    assert Image.open(tmp_path / "4-patch.png").size == (92, 92)  # conv4_3's receptive field
    results = json.loads((tmp_path / "top9" / "top9.json").read_text())
    assert results["images"] == 3 and sorted(results["layers"]["conv4_3"]) == ["0", "1", "2", "3"]
    assert "done; pictures in" in done.stdout
