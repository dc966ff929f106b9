"""Cone-restricted forward passes: each row computes its unit's cone only, layer by layer.

A unit's value depends only on its cone (the part of each layer's map it reads, cones.py),
and its projection reads the forward's switches and masks only there. So where the plan
bounds every operation on the way up, each row of a batch runs forward over its own boxes
alone: a convolution or max pool reads the part of its input that its output box's windows
cover, padded with zeros (-inf for a max pool) where they run past the map's border, as the
model's own padding does, and runs without padding; position-by-position operations run on
the box as they are. The record then holds each row's switches and masks over the row's
boxes, which the cone-restricted backward reads directly.

Rows are units, not images: two units of one image each run their own cone. That pays when
an image has one unit (a channel's top 9); an image's many units share one forward instead
(windows.py, or a record of the whole image).

Only the operations whose backward runs on boxes too are taken (see ``BOXED_STEPS``); any
other on the way up (average pooling, a gate, a size read from the input...) makes
``cone_record`` answer None, and the caller runs the model's full forward.

Each convolution runs by the kernel ATen picks for the model's own call on the whole map
(oneDNN, or im2col for a small input of one image), so that it adds its products in the
model's order. Whether it does is not taken on trust: each convolution's geometry is tried once
on random numbers against the model's own call on the whole map, and where the orders differ
(oneDNN blocks a 3-channel 11x11 convolution differently on a small region) that convolution
runs on the whole map as the model runs it, with zeros outside the rows' boxes, and is cut back
to the boxes. faithful.py then tries each unit's whole path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from .cones import Boxed, ConePlan, rewindow
from .graph import LayerGraph
from .mirror import DeconvnetMirror, in_place
from .operations import FieldKind
from .receptive import Box, node_window, window_geometry
from .recorder import Record, flat_args
from .relu import ReluRule
from .steps import ChannelScale, Passthrough, Rectify, Split, Sum, TransposedConv2d, Unpad, Unpool2d

BOXED_STEPS = (TransposedConv2d, Unpool2d, Rectify, ChannelScale, Passthrough, Sum, Split, Unpad)


def cone_record(graph: LayerGraph, mirror: DeconvnetMirror, shapes: Record, plan: ConePlan, x: Tensor,
                target: fx.Node, rule: ReluRule, geometry: list | None = None,
                choices: dict | None = None) -> Record | None:
    """The forward of ``plan``'s rows over their cones: a Record whose saved switches and masks are
    per row over ``plan.boxes(node)``, and whose ``activation`` is the target's (B, C, 1, 1) units.

    ``shapes`` is a record of the same model and image size (an empty batch serves): its shapes,
    paths and shape-only data are reused. None when an operation on the way cannot run on boxes.
    ``geometry``, when given, receives what decides each operation's kernel and summation order:
    the shapes it runs on and how far each row's windows pass the map's border (faithful.py keys
    its trials by it). ``choices`` keeps, by convolution geometry, whether its region runs in the
    model's order (tried once; a fresh dict tries again).
    """
    choices = {} if choices is None else choices
    order = graph.ancestors(target)
    if not _boxable(graph, mirror, shapes, plan, order):
        return None
    record = Record(None, {}, shapes.tensors, shapes.shapes, shapes.on_path, boxed=True)
    # runs the nodes that do not depend on the input (weights, constants) as the model does
    runner = fx.Interpreter(graph.model, garbage_collect_values=False, graph=graph.graph)
    last_use = {source: index for index, node in enumerate(order) for source in node.all_input_nodes}
    env: dict[fx.Node, Any] = {}
    for index, node in enumerate(order):
        if node is graph.input:
            boxes = plan.boxes(node)
            env[node] = Boxed(rewindow(x[plan.images], [(0, 0)] * len(boxes), boxes), boxes)
        elif node not in shapes.on_path:
            runner.env = env
            env[node] = runner.run_node(node)
        else:
            env[node], saved = _boxed_node(graph, mirror.steps[node], node, env, shapes, plan, rule, runner,
                                           x.shape[0], geometry, choices)
            if saved is not None:
                record.saved[node] = saved
        for source in node.all_input_nodes:
            if last_use.get(source) == index:
                env.pop(source, None)
    record.activation = env[target].values
    return record


def _boxable(graph: LayerGraph, mirror: DeconvnetMirror, shapes: Record, plan: ConePlan,
             order: list[fx.Node]) -> bool:
    for node in order:
        if node is graph.input or node.op == "get_attr" or node not in graph.dynamic:
            continue
        if node not in shapes.on_path or not plan.bounded(node):
            return False  # a size or a whole-map value read from the input
        step = mirror.steps[node]
        if not isinstance(step, BOXED_STEPS):
            return False
        if any(s in graph.dynamic and s not in shapes.on_path for s in node.all_input_nodes):
            return False
        kind, window = node_window(graph, node)
        inputs = [s for s in node.all_input_nodes if s in shapes.on_path]
        if not inputs or not all(plan.bounded(s) for s in inputs):
            return False
        if isinstance(step, TransposedConv2d) and not (isinstance(window, nn.Conv2d) and node.args[0] is inputs[0]
                                                       and len(inputs) == 1):
            return False
        if isinstance(step, Unpool2d) and not (kind is FieldKind.WINDOW and node.args and node.args[0] is inputs[0]):
            return False
        if isinstance(step, Unpad) and not isinstance(window, nn.ZeroPad2d):
            return False
        if isinstance(step, (Rectify, ChannelScale, Passthrough, Sum, Split)):
            if kind not in (FieldKind.POINTWISE, FieldKind.CONCAT):
                return False
            size = shapes.shapes[node][-2:]
            if any(len(shapes.shapes[s]) != 4 or shapes.shapes[s][-2:] != size for s in inputs):
                return False  # a spatial broadcast
        # An in-place operation on a copy of its input: a later reader would miss the change.
        if in_place(node, graph) and any(user is not node and order.index(user) > order.index(node)
                                         for user in inputs[0].users if user in order):
            return False
    return True


def _boxed_node(graph: LayerGraph, step: Any, node: fx.Node, env: dict[fx.Node, Any], shapes: Record,
                plan: ConePlan, rule: ReluRule, runner: fx.Interpreter, batch: int,
                geometry: list | None, choices: dict) -> tuple[Boxed, Any]:
    boxes = plan.boxes(node)
    if isinstance(step, (TransposedConv2d, Unpool2d, Unpad)):
        source = node.args[0]
        assert isinstance(source, fx.Node)  # _boxable checked it
        height, width = shapes.shapes[source][-2:]
        module: Any = graph.model.get_submodule(str(node.target)) if node.op == "call_module" else None
        if isinstance(step, Unpad):
            left, _, top, _ = module.padding
            regions = [Box(b.top - top, b.left - left, b.height, b.width) for b in boxes]
        else:
            regions = _regions(boxes, *window_geometry(module if isinstance(step, TransposedConv2d) else step))
        if geometry is not None:
            geometry.append((height, width, tuple(_overlap(r, height, width) for r in regions)))
        if isinstance(step, TransposedConv2d):
            full_shape = (batch, *shapes.shapes[source][1:])
            below: Boxed = env[source]
            key = (node, full_shape, below.values.stride(1) == 1, below.values.dtype, below.values.device,
                   len(boxes), tuple(_overlap(r, height, width) for r in regions))
            if key not in choices:
                choices[key] = _region_in_models_order(module, step, full_shape, below, regions, boxes, plan.images)
            if choices[key]:
                value = _convolution(_gathered(below, regions, (height, width), 0.0), module, step, full_shape)
            else:
                value = _whole_map_convolution(module, full_shape, below, boxes, plan.images)
            return Boxed(value, boxes), shapes.saved.get(node)
        if isinstance(step, Unpool2d):
            kernel, stride, _, dilation = window_geometry(step)
            region_values = _gathered(env[source], regions, (height, width), float("-inf"))
            value, where = F.max_pool2d(region_values, kernel, stride, 0, dilation, return_indices=True)
            return Boxed(value, boxes), (_in_box(where, regions, env[source].boxes), shapes.saved[node][1])
        return Boxed(_gathered(env[source], regions, (height, width), 0.0), boxes), None
    if geometry is not None:
        geometry.append((boxes[0].height, boxes[0].width))
    # position by position: the operation itself, on the inputs cut to this node's boxes

    def cut(value: Any) -> Any:
        return rewindow(value.values, [(b.top, b.left) for b in value.boxes], boxes) if isinstance(
            value, Boxed) else value

    args = fx.node.map_arg(node.args, lambda source: cut(env[source]))
    kwargs = fx.node.map_arg(node.kwargs, lambda source: cut(env[source]))
    value, saved = step.run(lambda: getattr(runner, node.op)(node.target, args, kwargs), flat_args(args), rule)
    if isinstance(step, (Sum, Split)):
        saved = shapes.saved[node]  # shapes and sizes of the whole maps
    return Boxed(value, boxes), saved


def _region_in_models_order(module: nn.Conv2d, step: TransposedConv2d, full_shape: tuple[int, ...], below: Boxed,
                             regions: list[Box], boxes: list[Box], images: list[int]) -> bool:
    """Whether ``_convolution`` on these regions gives, bit for bit, the model's call on the whole map
    at the output boxes: tried on random numbers (two summation orders disagree on them)."""
    layout = torch.channels_last if below.values.stride(1) == 1 else torch.contiguous_format
    generator = torch.Generator(device=below.values.device).manual_seed(len(regions))
    noise = torch.empty(full_shape, dtype=below.values.dtype, device=below.values.device).normal_(generator=generator)
    noise = noise.contiguous(memory_format=layout)
    rows = Boxed(torch.stack([_cut(noise[image], b) for image, b in zip(images, below.boxes)]), below.boxes)
    height, width = full_shape[-2:]
    ours = _convolution(_gathered(rows, regions, (height, width), 0.0), module, step, full_shape)
    models = module(noise)
    return torch.equal(ours, torch.stack([_cut(models[image], b) for image, b in zip(images, boxes)]))


def _whole_map_convolution(module: nn.Conv2d, full_shape: tuple[int, ...], below: Boxed, boxes: list[Box],
                           images: list[int]) -> Tensor:
    """The model's own call on a whole map holding each row's box at its image (zeros elsewhere: the
    boxes hold all that the output boxes read), cut to the output boxes."""
    layout = torch.channels_last if below.values.stride(1) == 1 else torch.contiguous_format
    whole = below.values.new_zeros(full_shape).contiguous(memory_format=layout)
    for row, (image, b) in enumerate(zip(images, below.boxes)):
        whole[image, :, b.top:b.top + b.height, b.left:b.left + b.width] = below.values[row]
    out = module(whole)
    return torch.stack([_cut(out[image], b) for image, b in zip(images, boxes)])


def _cut(plane: Tensor, box: Box) -> Tensor:
    return plane[..., box.top:box.top + box.height, box.left:box.left + box.width]


def _convolution(region: Tensor, module: nn.Conv2d, step: TransposedConv2d, full_shape: tuple[int, ...]) -> Tensor:
    """``module`` on a region of its input, unpadded, by the kernel ATen picks for the model's own call
    on the whole map (``full_shape``): a small region would otherwise go to another kernel (ATen
    takes im2col for an input of one image under 20480 values), which adds in another order."""
    channels_last = region.stride(1) == 1 and region.dim() == 4
    # A channels-last input (an image from PIL is one) makes oneDNN reorder the weight on every
    # call; the step keeps it reordered (the same numbers, so the same result).
    weight = step.channels_last_weight() if channels_last else module.weight
    kernel, stride, padding, dilation = window_geometry(module)
    backend = _model_backend(full_shape, channels_last, region.dtype, region.device.type, tuple(weight.shape),
                             module.bias is not None, stride, padding, dilation, module.groups)
    if backend == "Mkldnn":
        return torch.ops.aten.mkldnn_convolution(region, weight, module.bias, [0, 0], stride, dilation,
                                                 module.groups)
    if backend == "Slow2d" and module.groups == 1:  # ATen runs groups one by one
        return torch.ops.aten._slow_conv2d_forward(region.contiguous(), weight.contiguous(), kernel, module.bias,
                                                   stride, [0, 0])
    return F.conv2d(region, weight, module.bias, stride, 0, dilation, module.groups)


@lru_cache(maxsize=4096)
def _model_backend(shape: tuple[int, ...], channels_last: bool, dtype: torch.dtype, device: str,
                   weight_shape: tuple[int, ...], bias: bool, stride, padding, dilation, groups: int) -> str:
    """The name of the kernel ATen chooses for a convolution of an input of ``shape`` (the model's)."""
    select = getattr(torch._C, "_select_conv_backend", None)
    if select is None:
        return "default"
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # nothing is computed: the choice reads shapes, layout and type only
    probe = torch.empty(shape, dtype=dtype, device=device).contiguous(memory_format=layout)
    weight = torch.empty(weight_shape, dtype=dtype, device=device).contiguous(memory_format=layout)
    bias_tensor = torch.empty(weight_shape[0], dtype=dtype, device=device) if bias else None
    try:
        chosen = select(probe, weight, bias_tensor, list(stride), list(padding), list(dilation), False, [0, 0],
                        groups, None)
    except (RuntimeError, TypeError):
        return "default"
    return str(chosen).rsplit(".", 1)[-1]


def _overlap(region: Box, height: int, width: int) -> tuple[int, ...]:
    """How far a window region passes each border of its (height, width) map, and its size."""
    return (max(-region.top, 0), max(-region.left, 0), max(region.top + region.height - height, 0),
            max(region.left + region.width - width, 0), region.height, region.width)


def _in_box(where: Tensor, regions: list[Box], boxes: list[Box]) -> Tensor:
    """Switches, flat positions in each row's region, as flat positions in the row's input box (what the
    cone backward unpools into). A region may reach past the box, where the unit's cone is not (and the
    signal is zero): those are clamped into the box."""
    if all(r == b for r, b in zip(regions, boxes)):
        return where
    width, box = regions[0].width, boxes[0]
    tops = where.new_tensor([r.top - b.top for r, b in zip(regions, boxes)]).view(-1, 1, 1, 1)
    lefts = where.new_tensor([r.left - b.left for r, b in zip(regions, boxes)]).view(-1, 1, 1, 1)
    rows = (where // width + tops).clamp_(0, box.height - 1)
    return rows * box.width + (where % width + lefts).clamp_(0, box.width - 1)


def _regions(boxes: list[Box], kernel, stride, padding, dilation) -> list[Box]:
    """The input windows that the output ``boxes`` read, in the input map (they may pass its border)."""
    return [Box(b.top * stride[0] - padding[0], b.left * stride[1] - padding[1],
                (b.height - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1,
                (b.width - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1) for b in boxes]


def _gathered(source: Boxed, regions: list[Box], size: tuple[int, int], outside: float) -> Tensor:
    """Each row's values over ``regions[i]``: ``outside`` past the map's border (the padding), zero
    where the row's box has no values (outside its cone, where nothing the unit depends on is)."""
    values = rewindow(source.values, [(b.top, b.left) for b in source.boxes], regions)
    height, width = size
    if outside != 0.0 and any(r.top < 0 or r.left < 0 or r.top + r.height > height or r.left + r.width > width
                              for r in regions):
        # a region past the border is never a view of the source's values (they lie inside the map)
        assert values.data_ptr() != source.values.data_ptr()
        for row, r in enumerate(regions):
            values[row, :, :max(-r.top, 0)] = outside
            values[row, :, max(height - r.top, 0):] = outside
            values[row, :, :, :max(-r.left, 0)] = outside
            values[row, :, :, max(width - r.left, 0):] = outside
    return values

