"""Project one activation back to pixel space (Zeiler & Fergus, ECCV 2014, Sec. 2.1).

A forward pass records what the mirror needs: the max-pool switches, the ReLU masks and
the input shapes. Then the chosen activation alone seeds a backward pass through the
mirrored network: unpool with the switches, rectify, transposed convolution with the
convolution's own weights. The three modes differ only at the ReLU-like activations (see
relu.ReluRule). This module is the public face; the parts are its sibling modules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from ..errors import DeconvError
from . import drawing
from .backward import backward
from .coneforward import cone_record
from .cones import Boxed, ConePlan
from .faithful import ConeStatistics, Trials
from .features import FeatureExtractor
from .graph import Layer, LayerGraph
from .mirror import DeconvnetMirror
from .receptive import ReceptiveField
from .recorder import Record, Recorder
from .relu import ReluRule, relu_rule
from .validate import check_unit
from .windows import cut, group_by_size, plan_jobs

BACKWARD_CHUNK = 16  # units carried down together over whole maps
# Units carried down together over their cones: up to 4 while a cone's input box is small; one by
# one when it holds more than CONE_CHUNK_PIXELS, where a batch only grows every row's box to its
# largest member's and runs out of cache (measured on VGG16: conv3_3 2.4 ms a unit in fours, 3.0
# alone; conv5_3 51 ms alone, 68 in pairs, 94 in sixteens).
CONE_CHUNK, CONE_CHUNK_PIXELS = 4, 8192
WINDOW_CHUNK = 8  # input windows run forward together
# In a batch of several images a unit runs forward over its cone only while the cone's input box is
# at most this share of the image. Beyond it the cone forward saves little of a full forward and its
# trials, over a batch of x's shape, cost two, so the full forward serves (measured on VGG16, 9 units
# over 9 images: relu5_3's cone covers 77% of the image and costs 0.62 s a unit against 0.40 for the
# full pass; conv3_3's covers 3% and costs 7 ms). A single image has no limit: the full forward a
# cone saves is then the whole pass, and a trial costs two passes of one image (relu5_3 at 224 px,
# warm: 0.071 s over the cone against 0.119 s through the full forward, scripts/bench.py).
CONE_MAX_SHARE = 0.5


class Unit(NamedTuple):
    """One activation: image index in the batch, channel, (y, x) or None for a 1-D layer, value."""

    image: int
    channel: int
    position: tuple[int, int] | None
    value: float


@dataclass
class Projection:
    """The projections of several units of one layer: ``maps[i]`` belongs to ``units[i]``."""

    maps: Tensor  # (B, C_in, H, W)
    units: list[Unit]
    layer: Layer

    # For notebooks. Drawing is not the engine's: the renderer is the one the package registered
    # in engine/drawing.py, loaded only when a picture is asked for (no PIL or matplotlib before).
    def to_image(self, index: int | None = None, **options: Any) -> Any:
        """A PIL image of ``maps[index]`` or of all maps (options: transform, percentile)."""
        return drawing.renderer().projection_image(self, index, **options)

    def show(self, **options: Any) -> Any:
        """A matplotlib Figure of all maps, each titled by its unit; Jupyter displays it inline."""
        return drawing.renderer().projection_figure(self, **options)

    def _repr_png_(self) -> bytes:
        return self.show()._repr_png_()


class Deconvnet(FeatureExtractor):
    """A deconvnet attached to a model: project activations of any layer back to pixels.

    The model is only read: nothing is registered on it, nothing swapped, and its
    in-place ReLUs keep working. Use it as a context manager or call ``release()``.
    ``tracing`` is FeatureExtractor's: a model torch.fx cannot trace is recorded from a
    real forward pass on each input.

    >>> import torch, torchvision
    >>> model = torchvision.models.vgg11().eval()
    >>> with Deconvnet(model) as dn:
    ...     rec = dn.project(torch.rand(1, 3, 64, 64), layer="conv3_1", channel=5)
    >>> rec.shape
    torch.Size([1, 3, 64, 64])
    """

    mirror: DeconvnetMirror

    def __init__(self, model: nn.Module, tracing: str = "auto") -> None:
        self.mirror = None  # type: ignore[assignment]  # built with the graph
        super().__init__(model, tracing)

    def _attach(self, graph: LayerGraph) -> None:
        super()._attach(graph)
        self.mirror = DeconvnetMirror(graph)
        self._recorder = Recorder(graph, self.mirror)
        self._trials = Trials(graph, self.mirror, self._recorder)

    @property
    def cone_statistics(self) -> ConeStatistics:
        """How many units the cone forward served and how many took the full forward (faithful.py).

        >>> import torch, torchvision
        >>> dn = Deconvnet(torchvision.models.vgg11().eval())
        >>> x = torch.rand(1, 3, 64, 64)
        >>> for channel in range(3):  # one geometry: read the full forward, then tried, then known
        ...     _ = dn.project_units(x, "conv3_1", [(0, channel, (4, 4))])
        >>> stats = dn.cone_statistics
        >>> stats.full_units + stats.cone_units, stats.trials
        (3, 1)
        """
        return self._trials.statistics

    # -- lifetime ---------------------------------------------------------------------
    def __enter__(self) -> "Deconvnet":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def release(self) -> None:
        """Drop the trace, the mirror and the cached forward passes."""
        super().release()
        self.mirror = None  # type: ignore[assignment]
        self._recorder = None  # type: ignore[assignment]
        self._trials = None  # type: ignore[assignment]

    # -- projection -------------------------------------------------------------------
    def project_units(
        self,
        x: Tensor,
        layer: str,
        units: Sequence[tuple[int, int, tuple[int, int] | None]],
        *,
        mode: str = "deconvnet",
        crop: bool = True,
        cones: bool = True,
    ) -> Projection:
        """Project several units of one layer, batched, each seeded with its own activation.

        ``units`` are (image index in x, channel, position or None for the strongest).
        Units of one image share one forward pass and its switches.

        Every projection follows the model's own forward pass: its max-pool switches and ReLU
        masks are the ones the model computes on x, bit for bit. The default path gets them
        cheaply: a unit alone in its image runs forward over its cone only (the part of each
        layer it depends on), where a trial has shown that this adds in the model's order
        (faithful.py); every other unit reads the record of one full forward pass over x. Each
        backward pass runs over the unit's cone; the map then equals the full pass up to the
        backward's float32 accumulation order.

        ``cones=False`` is the previous engine, kept as a baseline: the input window that feeds
        the units runs forward (its summation order can differ from the model's), and the
        backward runs over the whole window. ``crop=False`` runs the full pass over the whole
        image, the reference.

        >>> import torch, torchvision
        >>> dn = Deconvnet(torchvision.models.vgg11().eval())
        >>> p = dn.project_units(torch.rand(1, 3, 64, 64), "conv2_1", [(0, 3, None), (0, 7, (4, 5))])
        >>> p.maps.shape, p.units[1].position
        (torch.Size([2, 3, 64, 64]), (4, 5))
        """
        rule = relu_rule(mode)
        self._check_input(x)
        self.follow(x)
        target = self.graph.find(layer)
        if not units:
            raise DeconvError("expected at least one unit to project, received none")
        field = self._fields.get(target.node, ReceptiveField(None))
        # a recorded path holds for this input only, not for a window of it
        if crop and not self.concrete and field.size is not None and all(unit[2] is not None for unit in units):
            return self._project_cropped(x, target, list(units), field, rule, cones)
        if crop and cones and not self.concrete:
            return self._project_recorded(x, target, list(units), rule)
        return self._project_full(x, target, units, rule, cones=crop and cones)

    def _project_full(self, x: Tensor, target: Layer, units, rule: ReluRule, cones: bool = False) -> Projection:
        with torch.no_grad():
            try:
                record = self._recorder.record(x, target.node, rule)
            except RuntimeError as error:
                raise self._failure(x, target.name, error) from error
            return self._backward_units(x, record, target, units, rule, cones)

    def _project_recorded(self, x: Tensor, target: Layer, units: list, rule: ReluRule) -> Projection:
        """The units from the record of a full forward, each backward pass over its cone. The forward
        runs image by image over the images that have units, where a trial has shown that a row alone
        gets the numbers the forward over all of x gives it (faithful.py); else over all of x."""
        if x.shape[0] == 1 or not self._trials.rows_alone(target.node, x):
            return self._project_full(x, target, units, rule, cones=True)
        rows_of: dict[int, list[int]] = {}
        for row, (image, _, _) in enumerate(units):
            rows_of.setdefault(image, []).append(row)
        maps: list[Tensor] = [None] * len(units)  # type: ignore[list-item]  # every row is set below
        chosen: list[Unit] = [None] * len(units)  # type: ignore[list-item]
        for image, rows in rows_of.items():
            projection = self._project_full(x[image:image + 1], target, [(0, *units[row][1:]) for row in rows], rule,
                                            cones=True)
            for row, local_map, unit in zip(rows, projection.maps, projection.units):
                maps[row], chosen[row] = local_map, unit._replace(image=image)
        return Projection(torch.stack(maps), chosen, target)

    def _backward_units(self, x: Tensor, record: Record, target: Layer, units, rule: ReluRule,
                        cones: bool) -> Projection:
        """The projections of ``units`` of ``target`` from a record of x's forward pass, in chunks."""
        activation = record.activations.get(target.node)
        if not isinstance(activation, Tensor) or target.node not in record.on_path:
            raise DeconvError(f"layer {target.name} does not produce a tensor computed from the input")
        chosen = [self._select(activation, target, *unit) for unit in units]
        images = torch.tensor([u.image for u in chosen], device=x.device)
        one_per_image = len(chosen) == x.shape[0] and bool(
            (images == torch.arange(len(chosen), device=x.device)).all())
        maps = []
        # Chunks bound the memory: each row of the backward pass is a full set of feature maps.
        size = self._cone_chunk(target, x) if cones else BACKWARD_CHUNK
        for start in range(0, len(chosen), size):
            chunk = chosen[start:start + size]
            seed = activation.new_zeros(len(chunk), *activation.shape[1:])
            for row, unit in enumerate(chunk):
                index = (row, unit.channel) + tuple(unit.position or ())
                seed[index] = unit.value
            # one unit per image, in order: the records serve as they are
            rows = None if one_per_image and len(chunk) == len(chosen) else (
                torch.tensor([u.image for u in chunk], device=x.device))
            positions = [u.position for u in chunk if u.position is not None] if cones else None
            if positions is not None and len(positions) < len(chunk):
                positions = None  # a 1-D layer: no cone
            maps.append(backward(self.graph, self.mirror, record, seed, target.node, rows, rule, positions))
        return Projection(torch.cat(maps), chosen, target)

    def project_layers(
        self,
        x: Tensor,
        units: Mapping[str, Sequence[tuple[int, int, tuple[int, int] | None]]],
        *,
        modes: Sequence[str] = ("deconvnet",),
    ) -> dict[tuple[str, str], Projection]:
        """Project units of several layers, in several modes, from one forward pass over ``x``.

        ``units`` maps each layer to its units, as in ``project_units``. The forward pass over
        the whole of x records what every layer and mode needs (one pass serves the many units an
        image has in a microscope); each unit's backward pass then runs over its cone only.
        Returns the projections by (layer, mode).

        >>> import torch, torchvision
        >>> dn = Deconvnet(torchvision.models.vgg11().eval())
        >>> units = {"conv2_1": [(0, 3, None)], "conv4_1": [(0, 1, (2, 2)), (0, 5, (3, 1))]}
        >>> found = dn.project_layers(torch.rand(1, 3, 64, 64), units, modes=["deconvnet", "guided"])
        >>> sorted(found)
        [('conv2_1', 'deconvnet'), ('conv2_1', 'guided'), ('conv4_1', 'deconvnet'), ('conv4_1', 'guided')]
        >>> found["conv4_1", "guided"].maps.shape
        torch.Size([2, 3, 64, 64])
        """
        rules = {mode: relu_rule(mode) for mode in modes}
        if not rules or not units:
            raise DeconvError("expected at least one layer and one mode to project, received none")
        self._check_input(x)
        self.follow(x)
        targets = {layer: self.graph.find(layer) for layer in units}
        # A record with the ReLU masks serves every mode: the deconvnet's rule does not read them.
        recording = next((rule for rule in rules.values() if rule.masked), next(iter(rules.values())))
        with torch.no_grad():
            try:
                record = self._recorder.record(x, [t.node for t in targets.values()], recording)
            except RuntimeError as error:
                raise self._failure(x, ", ".join(units), error) from error
            return {(layer, mode): self._backward_units(x, record, targets[layer], list(units[layer]), rule, True)
                    for layer in units for mode, rule in rules.items() if units[layer]}

    def _project_cropped(self, x: Tensor, target: Layer, units: list, field: ReceptiveField,
                         rule: ReluRule, cones: bool) -> Projection:
        """The projections of units at known positions, each backward pass over its unit's cone.

        With ``cones``, a unit alone in its image runs forward over its cone where a trial has
        shown that this adds in the model's order (faithful.py); the others read one full forward
        of x. Without, the smallest input windows that determine the units run forward (windows.py),
        windows of equal size as one batch, with the image border keeping the model's padding.
        """
        height, width = x.shape[-2:]
        full_shape = self._output_shape(target, x)
        for image, channel, position in units:
            check_unit(target.name, target.kind, full_shape, x.shape[0], image, channel, position)
        stride_y, stride_x = field.stride
        maps = x.new_zeros(len(units), x.shape[1], height, width)
        chosen: list[Unit] = [None] * len(units)  # type: ignore[list-item]  # every row is set below
        jobs = plan_jobs(units, field, (height, width))
        if cones:
            # A unit runs over its own cone when it is alone in its image, or when its image's units'
            # cones together cover less than the image: below that, one full forward serves them better.
            per_image = Counter(image for image, _, _ in units)
            cone = min(field.size[0], height) * min(field.size[1], width) if field.size else None
            small = cone is None or x.shape[0] == 1 or cone <= CONE_MAX_SHARE * height * width
            alone = [row for row, (image, _, _) in enumerate(units) if small and (
                     per_image[image] == 1 or cone is not None and per_image[image] * cone <= height * width)]
            done = self._project_cones(x, target, [units[row] for row in alone], rule)
            for index, (local_map, unit) in done.items():
                maps[alone[index]], chosen[alone[index]] = local_map, unit
            rest = [row for row, unit in enumerate(chosen) if unit is None]
            self._trials.statistics.cone_units += len(units) - len(rest)
            self._trials.statistics.full_units += len(rest)
            if rest:
                projection = self._project_recorded(x, target, [units[row] for row in rest], rule)
                for row, local_map, unit in zip(rest, projection.maps, projection.units):
                    maps[row], chosen[row] = local_map, unit
            return Projection(maps, chosen, target)
        for group in group_by_size(jobs):
            # chunks of windows bound the memory of one forward pass
            for start in range(0, len(group), WINDOW_CHUNK):
                jobs = group[start:start + WINDOW_CHUNK]
                batch = torch.stack([cut(x[job.image], job.window) for job in jobs])  # (G, C, h, w)
                placed = [(row, job.window) for job in jobs for row in job.rows]
                local = [(index, units[row][1], (units[row][2][0] - job.window.top // stride_y,
                                                 units[row][2][1] - job.window.left // stride_x))
                         for index, job in enumerate(jobs) for row in job.rows]
                projection = self._project_full(batch, target, local, rule, cones)
                for (row, window), local_map, unit in zip(placed, projection.maps, projection.units):
                    image, channel, position = units[row]
                    maps[row, :, window.top:window.top + window.height, window.left:window.left + window.width] = (
                        local_map)
                    chosen[row] = Unit(image, channel, tuple(position), unit.value)
        return Projection(maps, chosen, target)

    def _project_cones(self, x: Tensor, target: Layer, units: list, rule: ReluRule) -> dict[int, tuple[Tensor, Unit]]:
        """Units at known positions, each row forward and back over its own cone (coneforward.py), by
        their index in ``units``: those whose geometry's trial shows the model's own numbers
        (faithful.py). None of them when an operation on the way cannot run on boxes."""
        if not units:
            return {}
        try:
            shapes = self._recorder.record(x[:0], target.node, rule)  # an empty batch: shapes, no arithmetic
        except RuntimeError:
            return {}
        done: dict[int, tuple[Tensor, Unit]] = {}
        # Rows of one batch share their box sizes and kernels, so units whose cones meet the map's
        # borders alike go together: each batch then has a geometry that recurs, and is tried once.
        groups: dict[tuple, list[int]] = {}
        for index, geometry_class in enumerate(self._geometry_classes(shapes, target, units)):
            groups.setdefault(geometry_class, []).append(index)
        size = self._cone_chunk(target, x)
        batches = [(geometry_class, group[start:start + size]) for geometry_class, group in groups.items()
                   for start in range(0, len(group), size)]
        with torch.no_grad():
            for geometry_class, indices in batches:
                if self._trials.first_sighting(target.node, x, len(indices), geometry_class):
                    continue
                chunk = [units[index] for index in indices]
                positions = [(int(position[0]), int(position[1])) for _, _, position in chunk]
                images = [image for image, _, _ in chunk]
                plan = ConePlan(self.graph, shapes, target.node, positions, images)
                geometry: list = []
                record = cone_record(self.graph, self.mirror, shapes, plan, x, target.node, rule, geometry,
                                     self._trials.choices)
                if record is None:
                    return {}
                if not self._trials.faithful(shapes, target.node, positions, images, x, geometry):
                    continue
                plan.record = record
                rows = torch.arange(len(chunk), device=x.device)
                channels = torch.tensor([channel for _, channel, _ in chunk], device=x.device)
                values = record.activation[rows, channels, 0, 0]  # each row's box at the target is its unit
                seed = torch.zeros_like(record.activation)
                seed[rows, channels, 0, 0] = values
                boxes = plan.boxes(target.node)
                maps = backward(self.graph, self.mirror, record, Boxed(seed, boxes), target.node, None, rule,
                                plan=plan)
                for row, ((image, channel, _), position, value) in enumerate(zip(chunk, positions, values.tolist())):
                    done[indices[row]] = (maps[row], Unit(image, channel, position, float(value)))
        return done

    def _geometry_classes(self, shapes: Record, target: Layer, units: list) -> list[tuple]:
        """For each unit, its cone's box sizes at every layer and which map borders they meet."""
        cones = ConePlan(self.graph, shapes, target.node, [], []).cones
        classes = []
        for _, _, (y, x) in units:
            boxes = []
            for node, cone in cones.items():
                if cone is not None and node in shapes.shapes and len(shapes.shapes[node]) == 4:
                    height, width = shapes.shapes[node][-2:]
                    box = cone.box(int(y), int(x), (height, width)).clipped(height, width)
                    boxes.append((box.height, box.width, box.top == 0, box.left == 0,
                                  box.top + box.height == height, box.left + box.width == width))
            classes.append(tuple(boxes))
        return classes

    def _cone_chunk(self, target: Layer, x: Tensor) -> int:
        field = self._fields.get(target.node, ReceptiveField(None)).size
        if field is None:
            return BACKWARD_CHUNK
        pixels = min(field[0], x.shape[-2]) * min(field[1], x.shape[-1])
        return CONE_CHUNK if pixels <= CONE_CHUNK_PIXELS else 1

    def _output_shape(self, target: Layer, x: Tensor) -> torch.Size:
        """The target's output shape for x's image size, from an empty batch (no arithmetic runs)."""
        return self.activations(x[:0], [target.name])[target.name].shape[1:]

    def project(
        self,
        x: Tensor,
        layer: str,
        channel: int | Sequence[int],
        position: tuple[int, int] | None = None,
        mode: str = "deconvnet",
    ) -> Tensor:
        """Project one unit of ``layer`` per image back to pixel space.

        The unit is ``channel`` at ``position`` (y, x), or the channel's strongest
        activation when ``position`` is None. Every other activation of the layer is
        zeroed; the unit keeps its own value. Returns a tensor shaped like ``x``; for a
        list of channels, (N, len(channels), C, H, W) from one forward pass.

        >>> import torch, torchvision
        >>> with Deconvnet(torchvision.models.vgg11().eval()) as dn:
        ...     dn.project(torch.rand(1, 3, 64, 64), "conv3_1", [1, 2], mode="guided").shape
        torch.Size([1, 2, 3, 64, 64])
        """
        self._check_input(x)
        channels = [channel] if isinstance(channel, int) else list(channel)
        units = [(n, c, position) for n in range(x.shape[0]) for c in channels]
        maps = self.project_units(x, layer, units, mode=mode).maps
        return maps if isinstance(channel, int) else maps.view(x.shape[0], len(channels), *maps.shape[1:])

    def _select(self, activation: Tensor, layer: Layer, image: int, channel: int, position: Any) -> Unit:
        check_unit(layer.name, layer.kind, activation.shape[1:], activation.shape[0], image, channel, position)
        plane = activation[image, channel]
        if plane.dim() == 0:
            return Unit(image, channel, None, float(plane))
        if position is None:
            flat = int(plane.argmax())  # the first maximum in row-major order
            position = (flat // plane.shape[1], flat % plane.shape[1])
        y, x = (int(v) for v in position)
        return Unit(image, channel, (y, x), float(plane[y, x]))
