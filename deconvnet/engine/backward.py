"""The backward traversal: one seed carried down the mirror to the pixels (Zeiler & Fergus 2014)."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import Tensor

from .cones import Boxed, ConePlan
from .graph import LayerGraph
from .mirror import DeconvnetMirror
from .recorder import Record
from .relu import ReluRule
from .steps import Adjoint, Unsupported, take_rows


def backward(graph: LayerGraph, mirror: DeconvnetMirror, record: Record, seed: Tensor | Boxed, target: fx.Node,
             rows: Tensor | None, rule: ReluRule, positions: list[tuple[int, int]] | None = None,
             plan: ConePlan | None = None) -> Tensor:
    """The projection of ``seed`` (B, ...) at ``target`` onto the input, (B, C, H, W).

    ``rows`` are the images (in the recorded batch) the seed's rows belong to; None when
    row i is image i. Signals meeting at a node (residual paths) add up. With ``positions``
    (row i's unit, where its seed is non-zero) each row runs over its cone only (cones.py);
    the result is the same. A ``plan`` whose record is cone-restricted (coneforward.py) comes
    with its own seed, already over the target's boxes.
    """
    if plan is None and positions is not None:
        assert isinstance(seed, Tensor)  # a Boxed seed comes with its plan
        images = rows.tolist() if rows is not None else list(range(seed.shape[0]))
        plan = ConePlan(graph, record, target, positions, images)
    signals: dict[fx.Node, Any] = {target: plan.arriving(target, seed) if plan is not None else seed}
    for node in reversed(graph.ancestors(target)):
        signal = signals.pop(node, None)
        if node is graph.input:
            if isinstance(signal, Boxed):
                return plan.full(signal, node)  # type: ignore[union-attr]  # a Boxed signal has a plan
            assert signal is not None or isinstance(seed, Tensor)  # a cone plan's target is on the input's path
            return signal if signal is not None else torch.zeros_like(seed)  # type: ignore[arg-type]
        if signal is None:
            continue
        step = mirror.steps[node]
        assert not isinstance(step, Unsupported)  # the recorder refuses a path through one
        # A step answers one signal per tensor argument, in argument order.
        sources = [n for n in _flat_nodes(node) if n in record.tensors]
        arriving: list[tuple[fx.Node, Any]] | None = None
        if isinstance(signal, Boxed):
            assert plan is not None
            boxed = None if isinstance(step, Adjoint) else plan.step(step, node, signal, sources, rule)
            arriving = None if boxed is None else list(zip(sources, boxed))
            assert arriving is not None or not record.boxed  # coneforward takes only steps that run on boxes
            if arriving is None:
                signal = plan.full(signal, node)  # this step needs the whole map
        if arriving is None:
            if isinstance(step, Adjoint):
                arriving = list(step.backward(signal, record.saved[node], rows).items())
            else:
                outputs = step(signal, take_rows(record.saved.get(node), rows), rule)
                assert len(outputs) == len(sources), (node, len(outputs), len(sources))
                arriving = list(zip(sources, outputs))
        for source, contribution in arriving:
            if source in record.on_path and contribution is not None:
                if plan is not None:
                    contribution = plan.arriving(source, contribution)
                signals[source] = _add(signals.get(source), contribution)
    raise AssertionError("the traversal never reached the input")


def _add(total: Any, contribution: Any) -> Any:
    """Sum of two signals: tensors, boxed rows or tuples of them (a chunk's pieces) where None means zero."""
    if total is None:
        return contribution
    if contribution is None:
        return total
    if isinstance(total, (Tensor, Boxed)):
        return total + contribution
    return type(total)(_add(a, b) for a, b in zip(total, contribution))


def _flat_nodes(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found
