"""Project one activation back to pixel space (Zeiler & Fergus, ECCV 2014, Sec. 2.1).

A forward pass records what the mirror needs: the max-pool switches, the ReLU masks and
the input shapes. Then the chosen activation alone seeds a backward pass through the
mirrored network: unpool with the switches, rectify, transposed convolution with the
convolution's own weights. The three modes differ only at the ReLU (see rules.RELU_RULES).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.fx as fx
from torch import Tensor, nn

from .concrete import record_graph
from .errors import DeconvError
from .graph import Layer, LayerGraph, NotTraceable
from .receptive import Box, ReceptiveField, receptive_fields
from .rules import Adjoint, Mirror, Unsupported, check_mode, operation_of, relu_rule, supported_operations, take_rows

BACKWARD_CHUNK = 16  # units carried down together


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


class DeconvnetMirror(nn.Module):
    """The mirrored network, one backward step per forward operation, printed top-down."""

    def __init__(self, graph: LayerGraph) -> None:
        super().__init__()
        self.steps: dict[fx.Node, Mirror | Unsupported] = {}
        self.names: dict[fx.Node, str] = {}
        modules = nn.ModuleList()
        for layer in graph.layers:
            if layer.is_container:
                continue
            step = _build_mirror(layer, graph)
            self.steps[layer.node], self.names[layer.node] = step, layer.name
            if isinstance(step, Mirror):
                modules.append(step)
        self.modules_ = modules  # the steps hold no parameters: the user's weights are read, not registered
        # in-place writes whose result nothing reads: the data flow does not show them
        self.unseen = {node.args[0]: self.steps[node] for node in graph.graph.nodes
                       if node in self.steps and node.args and isinstance(node.args[0], fx.Node) and not node.users
                       and (node.target is operator.setitem or _in_place(node, graph))}
        self.mutated = {node for node in graph.graph.nodes if any(_in_place(user, graph) and user.args
                                                                   and user.args[0] is node for user in node.users)}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(  # from the top layer down to the pixels"]
        for node in reversed(list(self.steps)):
            lines.append(f"  ({self.names[node]}): {self.steps[node]!r}".replace("\n", "\n  "))
        return "\n".join(lines + [")"])


def _build_mirror(layer: Layer, graph: LayerGraph) -> Mirror | Unsupported:
    node = layer.node
    where = f"{layer.name} ({layer.kind})"
    target = node.target
    if node.op == "call_function" and target is operator.setitem:
        return Unsupported(f"{where} assigns into a tensor in place, which the recorded graph cannot follow")
    owner = getattr(target, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        return Unsupported(f"{where} is a custom autograd Function: its backward is not a known rule")
    in_kwargs: list[fx.Node] = []
    fx.node.map_arg(node.kwargs, lambda n: (in_kwargs.append(n), n)[1])
    dynamic_kwargs = any(n in graph.dynamic for n in in_kwargs)  # hand-written mirrors read positional inputs
    operation = operation_of(layer.module, node.op, target)
    try:
        if operation is None or dynamic_kwargs:
            step: Mirror = Adjoint(layer.kind, inplace=_in_place(node, graph))
        elif layer.module is not None:
            step = operation.mirror(layer.module)
        else:
            step = operation.mirror(node.args, node.kwargs)
    except DeconvError as error:
        return Unsupported(f"{where}: {error}")
    if isinstance(step, Adjoint) and step.inplace and node.args and isinstance(node.args[0], fx.Node):
        # The adjoint runs on a copy; a later reader of the overwritten input would miss the change.
        if any(user is not node and _runs_after(user, node) for user in node.args[0].users):
            return Unsupported(f"{where} changes its input in place and the input is read again later; "
                               f"the recorded graph cannot follow that")
    return step


def _in_place(node: fx.Node, graph: LayerGraph) -> bool:
    """Does ``node`` overwrite its first argument?"""
    if node.op == "call_module":
        return bool(getattr(graph.model.get_submodule(str(node.target)), "inplace", False))
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.endswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return bool(node.kwargs.get("inplace")) or (
            node.target in (operator.iadd, operator.isub, operator.imul, operator.itruediv)) or (
            name.endswith("_") and not name.endswith("__"))
    return False


def _runs_after(node: fx.Node, other: fx.Node) -> bool:
    current = other.next
    while current.op != "root":
        if current is node:
            return True
        current = current.next
    return False


class Deconvnet:
    """A deconvnet attached to a model: project activations of any layer back to pixels.

    The model is only read: nothing is registered on it, nothing swapped, and its
    in-place ReLUs keep working. Use it as a context manager or call ``release()``.

    >>> import torch, torchvision
    >>> model = torchvision.models.vgg11().eval()
    >>> with Deconvnet(model) as dn:
    ...     rec = dn.project(torch.rand(1, 3, 64, 64), layer="conv3_1", channel=5)
    >>> rec.shape
    torch.Size([1, 3, 64, 64])
    """

    graph: LayerGraph
    mirror: DeconvnetMirror

    def __init__(self, model: nn.Module, tracing: str = "auto") -> None:
        if tracing not in ("auto", "symbolic", "concrete"):
            raise DeconvError(f"unknown tracing {tracing!r}: expected auto, symbolic or concrete")
        self.model = model
        self._released = False
        self._truncated: dict[tuple[str, ...], Callable] = {}
        # A model torch.fx cannot trace is recorded from a real forward pass on each input
        # (deconvnet/concrete.py): the graph then describes the path that input took.
        self.concrete = tracing == "concrete"
        if not self.concrete:
            try:
                self._attach(LayerGraph(model))
            except NotTraceable as error:
                if tracing == "symbolic":
                    raise DeconvError(f"{error}; tracing='concrete' records a real forward pass instead") from error
                self.concrete = True
        if self.concrete:
            if not isinstance(model, nn.Module):
                raise TypeError(f"expected a torch.nn.Module, received {type(model).__name__}")
            self.graph = None  # type: ignore[assignment]
            self.mirror = None  # type: ignore[assignment]
            self._fields: dict[fx.Node, ReceptiveField] = {}

    def _attach(self, graph: LayerGraph) -> None:
        self.graph = graph
        self.mirror = DeconvnetMirror(graph)
        self._fields = receptive_fields(graph)
        self._truncated = {}

    def follow(self, x: Tensor) -> None:
        """For a model recorded from real forward passes: record the path the model takes on ``x``.

        Projections and activations do this themselves; call it before naming layers
        (``dn.graph.layers``) of such a model. Nothing happens for a traced model.
        """
        if self.concrete and not self._released:
            try:
                graph, calls, _ = record_graph(self.model, x)
            except RuntimeError as error:
                raise DeconvError(f"the model failed on an input of shape {tuple(x.shape)}: "
                                  f"{str(error).splitlines()[0] if str(error).strip() else error!r}") from error
            self._attach(LayerGraph(self.model, traced=(graph, calls)))

    def _recorded(self) -> LayerGraph:
        if self.graph is None:
            raise DeconvError(f"{type(self.model).__name__} is recorded from a real forward pass: project or "
                              f"compute activations of an input first (or call follow(x))")
        return self.graph

    # -- lifetime ---------------------------------------------------------------------
    def __enter__(self) -> "Deconvnet":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def release(self) -> None:
        """Drop the trace, the mirror and the cached forward passes."""
        self._truncated.clear()
        self.mirror = None
        self._fields = {}
        self._released = True

    # -- layers -----------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        return self._recorded().find(name)

    def receptive_field(self, layer: str) -> ReceptiveField:
        """The receptive field of ``layer``'s units in input pixels."""
        return self._fields.get(self._recorded().find(layer).node, ReceptiveField(None))

    def box(self, layer: str, position: tuple[int, int] | None, image_size: tuple[int, int]) -> Box:
        """The input rectangle seen by the unit at ``position`` (unclipped)."""
        y, x = position if position is not None else (None, None)
        return self.receptive_field(layer).box(y, x, image_size)

    # -- forward ----------------------------------------------------------------------
    def activations(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """The outputs of ``layers`` for input ``x``, the forward pass stopping at the deepest.

        >>> import torch, torchvision
        >>> dn = Deconvnet(torchvision.models.vgg11().eval())
        >>> dn.activations(torch.rand(2, 3, 32, 32), ["conv2_1"])["conv2_1"].shape
        torch.Size([2, 128, 16, 16])
        """
        self._check_input(x)
        self.follow(x)
        forward = self._forward_to(layers)
        # oneDNN's fastest layout on this CPU (1.4x for the scan). Projections keep the model's
        # own layout: a different summation order can flip a near-tie between max-pool switches.
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            try:
                outputs = forward(x)
            except RuntimeError as error:
                raise self._failure(x, layers[-1], error) from error
        return dict(zip(layers, outputs))

    def _forward_to(self, layers: Sequence[str]) -> fx.GraphModule:
        key = tuple(layers)
        if key not in self._truncated:
            self._truncated[key] = self._truncate([self.graph.find(n).node for n in layers])
        return self._truncated[key]

    def minimum_input_size(self, layer: str, channels: int = 3) -> int | None:
        """The smallest square input side for which ``layer`` has an output (None: over 4096)."""

        def fits(side: int) -> bool:
            try:
                with torch.inference_mode():
                    (output,) = self._forward_to([layer])(torch.empty(0, channels, side, side))
            except RuntimeError:
                return False
            return all(size > 0 for size in output.shape[1:])

        low, high = 1, 4096
        if not fits(high):
            return None
        while low < high:  # shapes only: an empty batch computes nothing
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle + 1, high)
        return low

    def _failure(self, x: Tensor, layer: str, error: RuntimeError) -> DeconvError:
        """The model's own error, or, when the image is too small for the layer, the size it needs."""
        height, width = x.shape[-2:]
        message = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
        # Only a shape complaint can mean "too small"; a CUDA error or a bug is reported as it is.
        about_size = re.search(r"size|shape|dimension|kernel|too small|smaller|padding", message, re.IGNORECASE)
        needed = self.minimum_input_size(layer, x.shape[1]) if about_size else None
        if needed is not None and min(height, width) < needed:
            return DeconvError(f"the input is {height}x{width} pixels, too small for layer {layer}: "
                               f"it needs at least {needed}x{needed}; use a larger image or an earlier layer")
        return DeconvError(f"the model failed on an input of shape {tuple(x.shape)} before reaching {layer}: "
                           f"{message}")

    def _truncate(self, targets: list[fx.Node]) -> Callable:
        """A compiled forward that runs only what ``targets`` need and returns their outputs."""
        if self.concrete:
            return lambda x: self._interpret(x, targets)
        needed = set()
        for target in targets:
            needed.update(self.graph.ancestors(target))
        graph = fx.Graph()
        copies: dict[fx.Node, fx.Node] = {}
        for node in self.graph.graph.nodes:
            if node in needed:
                copies[node] = graph.node_copy(node, lambda n: copies[n])
        outputs = []
        for target in targets:
            value = copies[target]
            if any(user in needed for user in target.users):
                # a later in-place ReLU would overwrite this output: keep a copy
                value = graph.call_method("clone", (value,))
            outputs.append(value)
        graph.output(tuple(outputs))
        return fx.GraphModule(self.model, graph)

    def _interpret(self, x: Tensor, targets: list[fx.Node]) -> tuple:
        """The outputs of ``targets``, running the recorded graph node by node."""
        modules = dict(self.model.named_modules())
        values: dict[fx.Node, Any] = {}
        kept: dict[fx.Node, Any] = {}
        for node in self.graph.ancestors_of(targets):
            if node.op == "placeholder":
                values[node] = x
            elif node.op == "get_attr":
                values[node] = _fetch_attribute(self.model, str(node.target))
            else:
                values[node] = _execute(node, modules, values.__getitem__)
            if node in targets:
                value = values[node]
                kept[node] = value.clone() if isinstance(value, Tensor) else value
        return tuple(kept[t] for t in targets)

    def _check_input(self, x: Tensor) -> None:
        if self._released:
            raise DeconvError("this Deconvnet was released; create a new one for further projections")
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor of shape (N, C, H, W), received {type(x).__name__}")
        if x.dim() != 4:
            raise DeconvError(f"expected an input of shape (N, C, H, W), received shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise DeconvError(f"expected a floating-point input, received {x.dtype}")
        if not torch.isfinite(x).all():
            nan, infinite = int(x.isnan().sum()), int(x.isinf().sum())
            raise DeconvError(f"expected finite input values, received {nan} NaN and {infinite} infinite value(s) "
                              f"in an input of shape {tuple(x.shape)}; check the preprocessing that made it")
        training = [name or type(self.model).__name__ for name, m in self.model.named_modules() if m.training]
        if training:
            which = "the model" if training[0] == type(self.model).__name__ else f"submodule {training[0]} of the model"
            raise DeconvError(
                f"{which} is in training mode (dropout and batch statistics would change the result): "
                "call model.eval() first"
            )

    def _record(self, x: Tensor, target: fx.Node, mode: str) -> tuple[Tensor, dict, set, set]:
        """Run the forward pass up to ``target``, keeping what each mirror step needs."""
        rule = relu_rule(mode)
        order = self.graph.ancestors(target)
        last_use = {}
        for index, node in enumerate(order):
            for source in node.all_input_nodes:
                last_use[source] = index
        modules = dict(self.graph.model.named_modules())
        dynamic, mutated = self.graph.dynamic, self.mirror.mutated
        values: dict[fx.Node, Any] = {}
        saved: dict[fx.Node, Any] = {}
        tensors: set[fx.Node] = set()  # nodes whose value is a tensor
        on_path: set[fx.Node] = set()  # ... or holds tensors, and depends on the input
        for node in order:
            writer = self.mirror.unseen.get(node)
            if writer is not None and node is not target:
                reason = writer.reason if isinstance(writer, Unsupported) else f"{writer!r} writes in place"
                raise DeconvError(f"cannot project through {reason}. Supported operations: {supported_operations()}")
        for index, node in enumerate(order):
            if node.op == "placeholder":
                values[node] = x
            elif node.op == "get_attr":
                values[node] = _fetch_attribute(self.model, str(node.target))
            elif node not in dynamic:
                values[node] = _execute(node, modules, values.__getitem__)
            else:
                step = self.mirror.steps[node]
                if isinstance(step, Unsupported):
                    values[node] = _execute(node, modules, values.__getitem__)
                    if _holds_tensors(values[node]):
                        raise DeconvError(f"cannot project through {step.reason}. "
                                          f"Supported operations: {supported_operations()}")
                elif isinstance(step, Adjoint):
                    inputs = {n: values[n] for n in node.all_input_nodes if n in on_path}

                    def execute(feed: dict, node: fx.Node = node) -> Any:
                        return _execute(node, modules, lambda source: feed.get(source, values.get(source)))

                    values[node], saved[node] = step.record(execute, inputs, {n for n in inputs if n in mutated})
                    if node in mutated and isinstance(values[node], Tensor):
                        values[node] = values[node].clone()  # a later in-place step must not touch the record
                else:
                    args = fx.node.map_arg(node.args, values.__getitem__)
                    values[node], saved[node] = step.run(
                        lambda node=node: _execute(node, modules, values.__getitem__), _flat(args), rule)
            if isinstance(values[node], Tensor):
                tensors.add(node)
            if node in dynamic and _holds_tensors(values[node]):
                on_path.add(node)
            for source in node.all_input_nodes:
                if last_use.get(source) == index and source is not target:
                    values.pop(source, None)  # free activations nothing later reads
        return values[target], saved, tensors, on_path

    # -- projection -------------------------------------------------------------------
    def project_units(
        self,
        x: Tensor,
        layer: str,
        units: Sequence[tuple[int, int, tuple[int, int] | None]],
        *,
        mode: str = "deconvnet",
        crop: bool = True,
    ) -> Projection:
        """Project several units of one layer, batched, each seeded with its own activation.

        ``units`` are (image index in x, channel, position or None for the strongest).
        Units of one image share one forward pass and its switches.

        A unit's projection is zero outside its receptive field, and nothing outside that
        field can change it. So when every position is given (and the layer's field is
        finite), only the input window that feeds the units runs forward and back. The
        result is the same as the full pass, which ``crop=False`` forces.

        >>> import torch, torchvision
        >>> dn = Deconvnet(torchvision.models.vgg11().eval())
        >>> p = dn.project_units(torch.rand(1, 3, 64, 64), "conv2_1", [(0, 3, None), (0, 7, (4, 5))])
        >>> p.maps.shape, p.units[1].position
        (torch.Size([2, 3, 64, 64]), (4, 5))
        """
        check_mode(mode)
        self._check_input(x)
        self.follow(x)
        target = self.graph.find(layer)
        if not units:
            raise DeconvError("expected at least one unit to project, received none")
        field = self._fields.get(target.node, ReceptiveField(None))
        # a recorded path holds for this input only, not for a window of it
        if crop and not self.concrete and field.size is not None and all(unit[2] is not None for unit in units):
            return self._project_cropped(x, target, list(units), field, mode)
        return self._project_full(x, target, units, mode)

    def _project_full(self, x: Tensor, target: Layer, units, mode: str) -> Projection:
        with torch.no_grad():
            try:
                activation, saved, tensors, on_path = self._record(x, target.node, mode)
            except RuntimeError as error:
                raise self._failure(x, target.name, error) from error
            if not isinstance(activation, Tensor) or target.node not in on_path:
                raise DeconvError(f"layer {target.name} does not produce a tensor computed from the input")
            chosen = [self._select(activation, target, *unit) for unit in units]
            images = torch.tensor([u.image for u in chosen], device=x.device)
            if len(chosen) == x.shape[0] and bool((images == torch.arange(len(chosen), device=x.device)).all()):
                images = None  # one unit per image, in order: the records serve as they are
            maps = []
            # Chunks bound the memory: each row of the backward pass is a full set of feature maps.
            for start in range(0, len(chosen), BACKWARD_CHUNK):
                chunk = chosen[start:start + BACKWARD_CHUNK]
                seed = activation.new_zeros(len(chunk), *activation.shape[1:])
                for row, unit in enumerate(chunk):
                    seed[(row, unit.channel, *(unit.position or ()))] = unit.value
                rows = None if images is None and len(chunk) == len(chosen) else (
                    torch.tensor([u.image for u in chunk], device=x.device))
                maps.append(self._backward(seed, target.node, saved, tensors, on_path, rows, mode))
        return Projection(torch.cat(maps), chosen, target)

    def _project_cropped(self, x: Tensor, target: Layer, units: list, field: ReceptiveField, mode: str) -> Projection:
        """The full projection, computed on the smallest input windows that determine it.

        Each image is cut to the union of its units' receptive fields (inside the image),
        the window's start moved back to a multiple of the layer's stride so that every
        pooling and strided grid stays aligned with the full image's. Positions inside the
        fields then see exactly the values, switches and masks of the full pass, and the
        image border keeps the model's own padding. Windows of equal size run as one batch.
        """
        height, width = x.shape[-2:]
        full_shape = self._output_shape(target, x)
        for image, channel, position in units:
            self._check_unit(target, full_shape, x.shape[0], image, channel, position)
        windows: dict[int, Box] = {}
        for image, _, (y, x_) in units:
            box = field.box(y, x_, (height, width)).clipped(height, width)
            windows[image] = _union_box(windows[image], box) if image in windows else box
        stride_y, stride_x = field.stride
        for image, box in windows.items():
            top, left = box.top - box.top % stride_y, box.left - box.left % stride_x
            windows[image] = Box(top, left, box.top + box.height - top, box.left + box.width - left)
        groups: dict[tuple[int, int], list[int]] = {}
        for image, box in windows.items():
            groups.setdefault((box.height, box.width), []).append(image)
        maps = x.new_zeros(len(units), x.shape[1], height, width)
        chosen: list[Unit | None] = [None] * len(units)
        for images in groups.values():
            batch = torch.stack([_cut(x[image], windows[image]) for image in images])  # (G, C, h, w)
            rows = [row for row, unit in enumerate(units) if unit[0] in images]
            local = []
            for row in rows:
                image, channel, (y, x_) = units[row]
                window = windows[image]
                local.append((images.index(image), channel, (y - window.top // stride_y, x_ - window.left // stride_x)))
            projection = self._project_full(batch, target, local, mode)
            for row, local_map, unit in zip(rows, projection.maps, projection.units):
                image, channel, position = units[row]
                window = windows[image]
                maps[row, :, window.top:window.top + window.height, window.left:window.left + window.width] = local_map
                chosen[row] = Unit(image, channel, tuple(position), unit.value)
        return Projection(maps, chosen, target)

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
        many = not isinstance(channel, int)
        channels = list(channel) if many else [channel]
        units = [(n, c, position) for n in range(x.shape[0]) for c in channels]
        maps = self.project_units(x, layer, units, mode=mode).maps
        return maps.view(x.shape[0], len(channels), *maps.shape[1:]) if many else maps

    def _select(self, activation: Tensor, layer: Layer, image: int, channel: int, position) -> Unit:
        self._check_unit(layer, activation.shape[1:], activation.shape[0], image, channel, position)
        plane = activation[image, channel]
        if plane.dim() == 0:
            return Unit(image, channel, None, float(plane))
        if position is None:
            flat = int(plane.argmax())  # the first maximum in row-major order
            position = (flat // plane.shape[1], flat % plane.shape[1])
        y, x = (int(v) for v in position)
        return Unit(image, channel, (y, x), float(plane[y, x]))

    @staticmethod
    def _check_unit(layer: Layer, shape: torch.Size, batch: int, image: int, channel, position) -> None:
        """A DeconvError unless (image, channel, position) names a unit of a (C,) or (C, H, W) output."""
        if not isinstance(channel, int) or isinstance(channel, bool):
            raise DeconvError(f"expected an integer channel, received {channel!r}")
        if len(shape) not in (1, 3):
            raise DeconvError(f"expected layer {layer.name} to output (N, C) or (N, C, H, W), "
                              f"received shape (N, {', '.join(map(str, shape))})")
        count = shape[0]
        if not 0 <= channel < count:
            raise DeconvError(
                f"channel {channel} is out of range for layer {layer.name}: it has {count} channels (0..{count - 1})"
            )
        if not 0 <= image < batch:
            raise DeconvError(f"image index {image} is out of range: the batch has {batch} images")
        if len(shape) == 1:
            if position is not None:
                raise DeconvError(f"layer {layer.name} is one-dimensional ({layer.kind}): give no position")
            return
        if position is None:
            return
        height, width = shape[1], shape[2]
        try:
            y, x = (int(v) for v in position)
        except (TypeError, ValueError):
            raise DeconvError(f"expected a position (y, x) of two integers, received {position!r}") from None
        if not (0 <= y < height and 0 <= x < width):
            raise DeconvError(
                f"position ({y}, {x}) is outside layer {layer.name}'s {height}x{width} map: "
                f"expected 0 <= y < {height} and 0 <= x < {width}"
            )

    def _backward(
        self, seed: Tensor, target: fx.Node, saved: dict, tensors: set, on_path: set, rows, mode: str
    ) -> Tensor:
        """Carry the seed down the mirror; signals meeting at a node (residual paths) add up."""
        rule = relu_rule(mode)
        signals: dict[fx.Node, Any] = {target: seed}
        for node in reversed(self.graph.ancestors(target)):
            signal = signals.pop(node, None)
            if node is self.graph.input:
                return signal if signal is not None else torch.zeros_like(seed)
            if signal is None:
                continue
            step = self.mirror.steps[node]
            if isinstance(step, Adjoint):
                arriving = list(step.backward(signal, saved[node], rows).items())
            else:
                outputs = step(signal, take_rows(saved.get(node), rows), rule)
                # A step answers one signal per tensor argument, in argument order.
                sources = [n for n in _flat_nodes(node) if n in tensors]
                assert len(outputs) == len(sources), (node, len(outputs), len(sources))
                arriving = list(zip(sources, outputs))
            for source, contribution in arriving:
                if source in on_path and contribution is not None:
                    signals[source] = _add(signals.get(source), contribution)
        raise AssertionError("the traversal never reached the input")


def _add(total: Any, contribution: Any) -> Any:
    """Sum of two signals: tensors, or tuples of them (a chunk's pieces) where None means zero."""
    if total is None:
        return contribution
    if contribution is None:
        return total
    if isinstance(total, Tensor):
        return total + contribution
    return type(total)(_add(a, b) for a, b in zip(total, contribution))


def _holds_tensors(value: Any) -> bool:
    return isinstance(value, Tensor) or (isinstance(value, (tuple, list)) and any(map(_holds_tensors, value)))


def _union_box(a: Box, b: Box) -> Box:
    top, left = min(a.top, b.top), min(a.left, b.left)
    bottom, right = max(a.top + a.height, b.top + b.height), max(a.left + a.width, b.left + b.width)
    return Box(top, left, bottom - top, right - left)


def _cut(image: Tensor, box: Box) -> Tensor:
    return image[:, box.top:box.top + box.height, box.left:box.left + box.width]


def _flat(args: Any) -> list[Any]:
    """Arguments in order, lists (torch.cat's) flattened."""
    flat: list[Any] = []
    for arg in args:
        flat.extend(_flat(arg) if isinstance(arg, (list, tuple)) else [arg])
    return flat


def _flat_nodes(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def _execute(node: fx.Node, modules: dict[str, nn.Module], value_of: Callable[[fx.Node], Any]) -> Any:
    """Run one graph operation on the values ``value_of`` gives for its input nodes."""
    args = fx.node.map_arg(node.args, value_of)
    kwargs = fx.node.map_arg(node.kwargs, value_of)
    if node.op == "call_module":
        return modules[str(node.target)](*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    raise AssertionError(f"unexpected node kind {node.op}")


def _fetch_attribute(model: nn.Module, target: str) -> Any:
    value: Any = model
    for part in target.split("."):
        value = getattr(value, part)
    return value
