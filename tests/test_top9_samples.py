"""The top-9 feature end to end on real photos with the shipped VGG16 (HED) weights."""

from __future__ import annotations

import json

from deconvnet.dataset.accumulators import TIE_ATOL, TIE_RTOL
from deconvnet.tasks.top9.compute import top9


def test_top9_on_imagenet_samples(samples, tmp_path):
    summary = top9(samples, tmp_path, layers=["conv3_3"], channels=range(4), limit=20, batch_size=10, workers=2,
                   progress=False)
    assert summary.images == 20 and summary.rendered == 4
    results = json.loads(summary.results_path.read_text())
    assert results["model"] == "vgg16-hed" and len(results["weights_sha256"]) == 64
    table = results["layers"]["conv3_3"]
    assert list(table) == ["0", "1", "2", "3"]
    for channel, entries in table.items():
        assert len(entries) == 9
        values = [entry["value"] for entry in entries]
        # best first; neighbours within the tie tolerance may come in image order instead
        assert all(a >= b - TIE_RTOL * abs(a) - TIE_ATOL for a, b in zip(values, values[1:]))
        assert len({entry["image"] for entry in entries}) == 9
        assert all((samples / entry["image"]).is_file() for entry in entries)
        assert all(0 <= entry["y"] < 56 and 0 <= entry["x"] < 56 for entry in entries)
        assert (tmp_path / "conv3_3" / f"channel_{int(channel):04d}.png").is_file()
    assert (tmp_path / "conv3_3" / "mosaic.png").is_file()
    assert (tmp_path / "index.html").is_file()
