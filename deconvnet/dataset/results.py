"""Typed results of a scan: an entry (image, position, value, label) and a layer's entries per channel.

Inside the package results travel as these types; JSON is only read and written at the edges
(``top9.json``, the microscope's data files, ``evolution.json``), in the documented format::

    {"image": "cats/a.jpg", "y": 12, "x": 40, "value": 87.5}            # + "label" where there are labels

``y``, ``x`` index the layer's activation map; both are null for a one-dimensional layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One image's strongest activation of a unit: ``position`` (y, x) in the layer's map, or None.

    >>> Entry.from_json({"image": "a.jpg", "y": 1, "x": 2, "value": 3.0}).position
    (1, 2)
    """

    image: str
    position: tuple[int, int] | None
    value: float
    label: str | None = None

    def to_json(self, *, label: bool = False) -> dict[str, Any]:
        """The entry as the files write it; ``label=True`` adds the "label" key (the microscope's format)."""
        y, x = self.position if self.position is not None else (None, None)
        entry: dict[str, Any] = {"image": self.image, "y": y, "x": x, "value": self.value}
        if label:
            entry["label"] = self.label
        return entry

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Entry:
        position = None if entry.get("y") is None else (int(entry["y"]), int(entry["x"]))
        return cls(str(entry["image"]), position, float(entry["value"]), entry.get("label"))

    def labelled(self, labels: dict[str, str]) -> Entry:
        return replace(self, label=labels.get(self.image))


@dataclass
class LayerResults:
    """A layer's entries per channel (best first) and, from the microscope, histograms of per-image maxima."""

    layer: str
    channels: dict[int, list[Entry]]
    histograms: dict[int, dict | None] = field(default_factory=dict)

    def to_json(self, *, label: bool = False) -> dict[str, list[dict]]:
        """{"<channel>": [entry, ...]}, as in top9.json's "layers"."""
        return {str(channel): [e.to_json(label=label) for e in entries] for channel, entries in self.channels.items()}

    @classmethod
    def from_json(cls, layer: str, table: dict[str, list[dict]],
                  histograms: dict[str, dict | None] | None = None) -> LayerResults:
        return cls(layer, {int(c): [Entry.from_json(e) for e in entries] for c, entries in table.items()},
                   {int(c): h for c, h in (histograms or {}).items()})

    def labelled(self, labels: dict[str, str]) -> LayerResults:
        return replace(self, channels={c: [e.labelled(labels) for e in entries]
                                       for c, entries in self.channels.items()})


@dataclass
class ScanResults:
    """What top9.json holds: the model, the rule the pictures use, the images scored, each layer's results."""

    model: str
    weights_sha256: str | None
    mode: str
    transform: dict
    images: int
    layers: dict[str, LayerResults]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "weights_sha256": self.weights_sha256, "mode": self.mode,
                "transform": self.transform, "images": self.images,
                "layers": {name: layer.to_json() for name, layer in self.layers.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanResults:
        return cls(data["model"], data.get("weights_sha256"), data["mode"], data["transform"], int(data["images"]),
                   {name: LayerResults.from_json(name, table) for name, table in data["layers"].items()})
