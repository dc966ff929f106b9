"""Whether a cone-restricted forward (coneforward.py) computes the model's own numbers.

A projection is the deconvnet of *this* forward pass: its max-pool switches and ReLU masks
(Zeiler & Fergus 2014, Sec. 2.1). The cone forward runs each convolution on the part of its
input a unit's cone covers, the model on the whole map. Both add the same products, but a
CPU kernel picks its summation order by the shapes it is given (oneDNN's blocking, ATen's
choice of kernel, the instruction set), so in float32 the two can differ in the last bit,
and a ReLU input or a max-pool margin that small then flips a mask or a switch: the map
follows a forward pass the model never ran.

No rounding bound computed along the way can settle it: the worst-case bound of a sum of n
products is n * 2**-24 of the sum of their magnitudes, a few percent of a VGG layer's values
(fan-in 4608), and it compounds through the layers, so nearly every unit would be in doubt.
What can be settled is whether the two paths add in the same order: same products, same
order, same bits, whatever the numbers. So each geometry (the shapes every operation runs
on, how far each row's windows pass the map's border, the batch, the layout and type: what
chooses a kernel) is tried once on random numbers against the model's full forward over a
batch of x's shape. Only if the unit's values and its projection in guided mode (which reads
every switch and mask) come out bit for bit the same does the cone forward serve; otherwise
the units take the full forward's record. Random numbers put about half of all ReLU inputs
and every max-pool window in play, and two different summation orders of one sum agree on
random numbers only by chance: for three terms, the smallest sum that has an order, seven
times in ten (measured on a 1x1 convolution over two channels, cropped against whole). So a
trial compares at least ``TRIAL_VALUES`` unit values, drawing more noise when the rows have
few channels (a draw compares rows x channels): a chance pass is about 0.7**128 ~ 1e-20.

The same holds for the rows of a batch. Units that share their image read a full forward, and
one image run alone is both the cheapest such forward (on VGG16 at 224 px, 48 images one by
one run 35% faster than as one batch: the maps stay in cache) and the only one that spares the
images without units. But the kernels are chosen by the batch's size too, so whether each row
alone gets the numbers the forward over all of x gives it is tried once per batch shape on
noise: every value of the target and every switch and mask, for every row, bit for bit.

A trial costs about two full forward passes, so a geometry is tried only when it comes back:
the first time (``TRIAL_AFTER`` sightings, told from the cones' box sizes before any arithmetic)
its units simply read the full forward, which is what a one-off projection would pay anyway; a
session of many projections (a channel's top 9, the explorer's clicks, a layer's units at
interior positions, which share one geometry) then runs them over their cones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx
from torch import Tensor

from .backward import backward
from .coneforward import cone_record
from .cones import Boxed, ConePlan
from .graph import LayerGraph
from .mirror import DeconvnetMirror
from .recorder import Record, Recorder
from .relu import RULES

TRIAL_RULE = RULES["guided"]  # reads the switches and the masks
TRIAL_SEED = 20141  # any fixed seed: a trial must not move the user's random state
TRIAL_VALUES = 128  # unit values a trial compares at least, over as many noise draws as that takes
TRIAL_AFTER = 1  # sightings of a geometry answered by the full forward before it is tried


@dataclass
class ConeStatistics:
    """What the cone forward did in one Deconvnet's life: how many units it served, how many
    read the full forward instead (their geometry not yet tried, or its trial failed, or the
    path cannot run on boxes, or they share their image), how many trials of geometries ran and
    how many failed, the same for trials of a batch's rows run alone, and the time of all trials."""

    cone_units: int = 0
    full_units: int = 0
    trials: int = 0
    failed_trials: int = 0
    row_trials: int = 0
    failed_row_trials: int = 0
    trial_seconds: float = 0.0


class Trials:
    """The verdicts of the trials, by geometry, for one traced model."""

    def __init__(self, graph: LayerGraph, mirror: DeconvnetMirror, recorder: Recorder) -> None:
        self.graph, self.mirror, self.recorder = graph, mirror, recorder
        self.verdicts: dict[tuple, bool] = {}
        self.sightings: dict[tuple, int] = {}
        self.choices: dict[tuple, bool] = {}  # cone_record's, by convolution geometry
        self.statistics = ConeStatistics()
        self._noise: tuple[tuple, Tensor, Record] | None = None

    def first_sighting(self, target: fx.Node, x: Tensor, rows: int, geometry_class: tuple) -> bool:
        """Whether a batch of this geometry class (box sizes and border contacts, known before any
        arithmetic) is among the first ``TRIAL_AFTER`` seen: it then reads the full forward, and
        neither the cone forward nor a trial runs."""
        return self._sighted((target, *_batch_key(x), rows, geometry_class))

    def faithful(self, shapes: Record, target: fx.Node, positions: list[tuple[int, int]], images: list[int],
                 x: Tensor, geometry: list) -> bool:
        """Whether the cone forward of these rows (whose ``geometry`` cone_record wrote) adds in the
        model's order; tried on random numbers the first time the geometry is seen."""
        key = (target, *_batch_key(x), len(positions), tuple(geometry))
        return self._verdict(key, lambda: self._trial(shapes, target, positions, images, x), rows=False)

    def rows_alone(self, target: fx.Node, x: Tensor) -> bool:
        """Whether each row of x, run forward alone, records what the forward over all of x records for
        it: the target's values and every switch and mask, bit for bit. Tried on noise, every row, when
        a batch like x comes back (its first sighting answers False: the forward over x serves)."""
        key = ("rows alone", target, *_batch_key(x))
        if self._sighted(key):
            return False

        def trial() -> bool:
            noise, full = self._noise_record(target, x, 0)
            return all(self._row_alone(noise, full, target, row) for row in range(x.shape[0]))

        return self._verdict(key, trial, rows=True)

    def _sighted(self, key: tuple) -> bool:
        """Counts a sighting of ``key``: whether it is among the first ``TRIAL_AFTER``."""
        self.sightings[key] = self.sightings.get(key, 0) + 1
        return self.sightings[key] <= TRIAL_AFTER

    def _verdict(self, key: tuple, trial: Callable[[], bool], rows: bool) -> bool:
        """The verdict for ``key``, from ``trial`` the first time it is asked for, counted and timed."""
        if key not in self.verdicts:
            start = time.perf_counter()
            verdict = self.verdicts[key] = trial()
            statistics = self.statistics
            if rows:
                statistics.row_trials += 1
                statistics.failed_row_trials += not verdict
            else:
                statistics.trials += 1
                statistics.failed_trials += not verdict
            statistics.trial_seconds += time.perf_counter() - start
        return self.verdicts[key]

    def _row_alone(self, noise: Tensor, full: Record, target: fx.Node, row: int) -> bool:
        # every row: a kernel may treat a batch's last rows apart (a remainder of its blocking)
        alone = self.recorder.record(noise[row:row + 1], target, TRIAL_RULE)
        index, batch = torch.tensor([row], device=noise.device), noise.shape[0]
        return _same_rows(full.activation, alone.activation, index, batch) and full.saved.keys() == alone.saved.keys(
            ) and all(_same_rows(full.saved[node], alone.saved[node], index, batch) for node in full.saved)

    def _noise_record(self, target: fx.Node, x: Tensor, draw: int) -> tuple[Tensor, Record]:
        """The trials' ``draw``-th noise, of x's shape and layout, and its full record. The model's
        numbers depend on the batch's size, so the reference runs over all of x's rows; the first
        draw, which every geometry tried on a batch like x shares, is kept for the next trial."""
        key = (target, *_batch_key(x))
        if draw == 0 and self._noise is not None and self._noise[0] == key:
            return self._noise[1], self._noise[2]
        if draw == 0:
            self._noise = None  # the previous record goes before the next is made
        generator = torch.Generator(device=x.device).manual_seed(TRIAL_SEED + draw)
        noise = torch.empty_like(x).normal_(generator=generator)  # x's shape and layout
        made = (noise, self.recorder.record(noise, target, TRIAL_RULE))
        if draw == 0:
            self._noise = (key, *made)
        return made

    def _trial(self, shapes: Record, target: fx.Node, positions: list[tuple[int, int]], images: list[int],
               x: Tensor) -> bool:
        compared, draw = 0, 0
        while compared < TRIAL_VALUES:
            noise, full = self._noise_record(target, x, draw)
            same, values = self._same_on(noise, full, shapes, target, positions, images)
            if not same:
                return False
            compared, draw = compared + values, draw + 1
        return True

    def _same_on(self, noise: Tensor, full: Record, shapes: Record, target: fx.Node,
                 positions: list[tuple[int, int]], images: list[int]) -> tuple[bool, int]:
        """Whether the cone forward of these rows on ``noise`` gives the full record's unit values and
        guided projections bit for bit, and how many unit values that compared."""
        plan = ConePlan(self.graph, shapes, target, positions, images)
        cone = cone_record(self.graph, self.mirror, shapes, plan, noise, target, TRIAL_RULE, choices=self.choices)
        if cone is None:
            return False, 0
        plan.record = cone
        device = noise.device
        rows = torch.arange(len(positions), device=device)
        ys = torch.tensor([y for y, _ in positions], device=device)
        xs = torch.tensor([x_ for _, x_ in positions], device=device)
        image_rows = torch.tensor(images, device=device)
        values = cone.activation[:, :, 0, 0]  # (B, C): every channel of each row's unit
        if not torch.equal(values, full.activation[image_rows, :, ys, xs]):
            return False, values.numel()
        seed = torch.zeros_like(cone.activation)
        seed[:, :, 0, 0] = values
        ours = backward(self.graph, self.mirror, cone, Boxed(seed, plan.boxes(target)), target, None, TRIAL_RULE,
                        plan=plan)
        full_seed = full.activation.new_zeros(len(positions), *full.activation.shape[1:])  # (B, C, H, W)
        full_seed[rows, :, ys, xs] = values
        reference = backward(self.graph, self.mirror, full, full_seed, target, image_rows, TRIAL_RULE,
                             list(positions))
        return torch.equal(ours, reference), values.numel()


def _batch_key(x: Tensor) -> tuple:
    """What of x chooses a kernel: its shape, layout, type and device."""
    return (tuple(x.shape), x.stride(), x.dtype, x.device)


def _same_rows(whole: Any, alone: Any, rows: Tensor, batch: int) -> bool:
    """Whether ``alone``, recorded from some rows of a batch, is ``whole``'s record of those rows: a
    tensor led by the batch by its rows, a batch's shape past its first size, containers item by
    item, plain values equal."""
    if isinstance(whole, Tensor):
        if not isinstance(alone, Tensor):
            return False
        if whole.dim() > 0 and whole.shape[0] == batch:
            whole = whole[rows]
        return whole.shape == alone.shape and torch.equal(whole, alone)
    if isinstance(whole, torch.Size):
        return isinstance(alone, torch.Size) and whole[0] == batch and alone[0] == len(rows) and whole[1:] == alone[1:]
    if isinstance(whole, (tuple, list)):
        return (type(whole) is type(alone) and len(whole) == len(alone)
                and all(_same_rows(a, b, rows, batch) for a, b in zip(whole, alone)))
    if isinstance(whole, dict):  # an exact adjoint's leaves, by input node
        return (isinstance(alone, dict) and whole.keys() == alone.keys()
                and all(_same_rows(whole[key], alone[key], rows, batch) for key in whole))
    if whole is None or isinstance(whole, (bool, int, float, str)):
        return type(whole) is type(alone) and whole == alone
    return False  # something else kept: not known to be the same, so not trusted
