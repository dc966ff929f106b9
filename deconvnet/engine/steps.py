"""The deconvnet's layers: one mirror step per forward operation.

Zeiler & Fergus (ECCV 2014, Sec. 2.1) reverse each layer of the convnet: max pooling
by unpooling with the recorded switches, a convolution by the transposed convolution
with the same filters, and a ReLU by rectifying the signal again. Every step here is
the adjoint of its forward operation, except at the ReLU-like activations, where the
chosen technique's rule (relu.ReluRule) replaces the derivative. So a whole projection
equals autograd with only those activations' backward replaced, which the tests check.

An operation without a hand-written step gets ``Adjoint``: the exact vector-Jacobian
product at the recorded forward inputs (average pooling, permutes, interpolation,
gates, normalizations, products of two signals...). Hand-written steps stay where they
are the paper's (transposed convolution, unpooling) or faster. Which operation gets which
step is the registry's (operations.py).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from ..errors import DeconvError
from .relu import ReluRule, relu_rule


class Mirror(nn.Module):
    """The backward step of one forward operation.

    ``run`` executes the forward operation and returns what the backward step needs
    (switches, masks, shapes); ``forward(signal, saved, mode)`` maps the signal at
    the operation's output to one signal per tensor input, in argument order.
    Mirrors read the user's weights but never register them, so ``mirror.to()`` or
    ``.half()`` cannot change the user's model.
    """

    def run(self, call: Callable[[], Any], args: list[Any], mode: str | ReluRule) -> tuple[Any, Any]:
        return call(), None


class KeepsInputShape(Mirror):
    """A step whose backward needs only the shape of the forward input (to restore it)."""

    def run(self, call, args, mode):
        return call(), args[0].shape


class TransposedConv2d(KeepsInputShape):
    """A convolution's adjoint: the transposed convolution with the convolution's own weight tensor."""

    bias = None

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros":
            raise DeconvError(
                f"padding_mode={conv.padding_mode!r} has no transposed convolution here; expected 'zeros'"
            )
        self._conv = (conv,)  # a tuple: read, never registered as our submodule
        self.stride, self.padding = conv.stride, _numeric_padding(conv)
        self.dilation, self.groups = conv.dilation, conv.groups

    @property
    def weight(self) -> Tensor:
        return self._conv[0].weight  # tied: the very same tensor, never a copy

    def channels_last_weight(self) -> Tensor:
        """The weight in channels-last order, for a channels-last signal: converted once, not on every
        call as oneDNN would, and again whenever the weight changes (its version counter moves)."""
        weight = self.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if getattr(self, "_cached_key", None) != key:
            self._cached_key = key
            self._cached = weight.detach().contiguous(memory_format=torch.channels_last)
        return self._cached

    def forward(self, signal: Tensor, input_shape: torch.Size, mode: Any = None) -> list[Tensor]:
        weight = self.weight
        # the output_padding that restores the forward input's size
        extra = [size - ((n - 1) * s - 2 * p + d * (k - 1) + 1) for size, n, s, p, d, k in zip(
            input_shape[-2:], signal.shape[-2:], self.stride, self.padding, self.dilation, weight.shape[-2:])]
        return [F.conv_transpose2d(signal, weight, None, self.stride, self.padding, tuple(extra), self.groups,
                                   self.dilation)]

    def extra_repr(self) -> str:
        out_channels, in_per_group = self.weight.shape[:2]
        return (f"{out_channels}, {in_per_group * self.groups}, kernel_size={tuple(self.weight.shape[-2:])}, "
                f"stride={self.stride}, padding={self.padding}, weight tied")


def _numeric_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise DeconvError("padding='same' with an even kernel pads unevenly; use numeric padding")
        return (total[0] // 2, total[1] // 2)
    return (int(conv.padding[0]), int(conv.padding[1]))


class Unpool2d(Mirror):
    """Max pooling's adjoint: each pooled value goes back to the input position that won.

    Where overlapping windows (3x3 stride 2) chose the same position their values are
    summed, which is what makes it the exact adjoint; nn.MaxUnpool2d would overwrite.
    """

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        if pool.return_indices:
            raise DeconvError("a MaxPool2d with return_indices=True returns a tuple; not supported")
        self.kernel_size, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        self.dilation, self.ceil_mode = pool.dilation, pool.ceil_mode

    def run(self, call, args, mode):
        x = args[0]
        output, switches = F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.dilation,
            ceil_mode=self.ceil_mode, return_indices=True,
        )
        return output, (switches, x.shape)

    def forward(self, signal: Tensor, saved: tuple[Tensor, torch.Size], mode: Any = None) -> list[Tensor]:
        switches, input_shape = saved  # switches: (N, C, h, w) flat positions in each H*W plane
        n, c, height, width = signal.shape[0], signal.shape[1], input_shape[-2], input_shape[-1]
        unpooled = signal.new_zeros(n, c, height * width)
        unpooled.scatter_add_(2, switches.reshape(n, c, -1), signal.reshape(n, c, -1))
        return [unpooled.view(n, c, height, width)]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, switches=recorded"


class Rectify(Mirror):
    """A ReLU-like activation: the mode's rule with f'(x) in place of the ReLU mask.

    ReLU and ReLU6 read their mask from the output (an in-place ReLU has already
    overwritten its input, and output > 0 exactly where input > 0). Other activations
    (SiLU, GELU, Hardswish...) get f'(x) by autograd at the recorded input, before the
    operation runs, since it may run in place.
    """

    def __init__(self, upper: float | None = None, redo: Callable[[Tensor], Tensor] | None = None,
                 name: str = "ReLU") -> None:
        super().__init__()
        self.upper = upper  # 6 for ReLU6: its gradient is zero above the cap as well
        # the activation applied to another tensor (None for a capped or plain ReLU); in a
        # tuple, so an activation module of the user's model is not registered as ours
        self._redo = (redo,)
        self.name = name

    def run(self, call, args, mode):
        if not relu_rule(mode).masked:
            return call(), None
        redo = self._redo[0]
        if redo is not None:
            with torch.enable_grad():
                leaf = _leaf(args[0], copy=False)
                output = redo(leaf.clone())  # a clone: an in-place activation may run
                (derivative,) = torch.autograd.grad(output, leaf, torch.ones_like(output))
            return call(), derivative
        output = call()
        mask = output > 0
        if self.upper is not None:
            mask &= output < self.upper
        return output, mask

    def forward(self, signal: Tensor, derivative: Tensor | None, mode: str | ReluRule) -> list[Tensor]:
        return [relu_rule(mode)(signal, derivative)]

    def extra_repr(self) -> str:
        if self._redo[0] is not None:
            return f"{self.name}: the mode's rule with f'(x)"
        return "" if self.upper is None else f"mask 0 < x < {self.upper:g}"


class ChannelScale(Mirror):
    """BatchNorm in eval mode is y = a * x + b per channel; its adjoint multiplies by a."""

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        if norm.running_var is None:
            raise DeconvError("a BatchNorm without running statistics is not a fixed linear map")
        self._norm = (norm,)  # a tuple, so the norm is read but not registered as our submodule

    def forward(self, signal: Tensor, saved: None, mode: Any = None) -> list[Tensor]:
        norm = self._norm[0]
        assert norm.running_var is not None  # checked when the mirror was built
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        return [signal * scale.view(1, -1, *[1] * (signal.dim() - 2)).to(signal.dtype)]


class Passthrough(Mirror):
    """Identity in eval mode (Dropout, Identity), or skipped as in the paper (LocalResponseNorm)."""

    def __init__(self, note: str = "") -> None:
        super().__init__()
        self.note = note

    def forward(self, signal: Tensor, saved: None, mode: Any = None) -> list[Tensor]:
        return [signal]

    def extra_repr(self) -> str:
        return self.note


class TransposedLinear(Mirror):
    """A fully connected layer's adjoint: multiply by the transposed (tied) weight."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self._linear = (linear,)  # read, never registered

    @property
    def weight(self) -> Tensor:
        return self._linear[0].weight

    def forward(self, signal: Tensor, saved: None, mode: Any = None) -> list[Tensor]:
        return [signal @ self.weight]  # (N, out) @ (out, in) -> (N, in)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} -> {self.weight.shape[1]}, weight tied"


class SpreadAverage(KeepsInputShape):
    """AdaptiveAvgPool2d's adjoint: each output cell spreads its signal evenly over its window."""

    def forward(self, signal: Tensor, input_shape: torch.Size, mode: Any = None) -> list[Tensor]:
        rows = _averaging_matrix(signal.shape[-2], input_shape[-2], signal)  # (h, H)
        cols = _averaging_matrix(signal.shape[-1], input_shape[-1], signal)  # (w, W)
        return [torch.einsum("nchw,hH,wW->ncHW", signal, rows, cols)]


def _averaging_matrix(out_size: int, in_size: int, like: Tensor) -> Tensor:
    """Row i averages input cells floor(i*L/o) .. ceil((i+1)*L/o) - 1, as adaptive pooling does."""
    matrix = like.new_zeros(out_size, in_size)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -(-(i + 1) * in_size // out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class Unpad(Mirror):
    """Zero padding's adjoint: cut the padded border off again."""

    def __init__(self, pad: nn.ZeroPad2d) -> None:
        super().__init__()
        self.left, self.right, self.top, self.bottom = pad.padding
        if min(pad.padding) < 0:
            raise DeconvError("a ZeroPad2d with negative padding crops; not supported")

    def forward(self, signal: Tensor, saved: None, mode: Any = None) -> list[Tensor]:
        height, width = signal.shape[-2:]
        return [signal[..., self.top:height - self.bottom, self.left:width - self.right]]

    def extra_repr(self) -> str:
        return f"left={self.left}, right={self.right}, top={self.top}, bottom={self.bottom}"


class Reshape(KeepsInputShape):
    """flatten/view/reshape: the adjoint puts the values back in the input's shape."""

    def forward(self, signal: Tensor, input_shape: torch.Size, mode: Any = None) -> list[Tensor]:
        return [signal.reshape(signal.shape[0], *input_shape[1:])]


class Sum(Mirror):
    """An addition (a residual connection) sends the signal to every summand."""

    def run(self, call, args, mode):
        return call(), [a.shape for a in args if isinstance(a, Tensor)]

    def forward(self, signal: Tensor, shapes: list[torch.Size], mode: Any = None) -> list[Tensor]:
        # A broadcast summand receives the signal summed over the dimensions it was broadcast
        # along; the batch dimension is the projections', one per row.
        return [signal.sum_to_size(signal.shape[0], *shape[1:]) if len(shape) == signal.dim()
                else signal.sum_to_size(shape) for shape in shapes]


class Split(Mirror):
    """torch.cat's adjoint: cut the signal back into the concatenated pieces."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def run(self, call, args, mode):
        return call(), [t.shape[self.dim] for t in args if isinstance(t, Tensor)]

    def forward(self, signal: Tensor, sizes: list[int], mode: Any = None) -> list[Tensor]:
        return list(signal.split(sizes, dim=self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Adjoint(Mirror):
    """The exact vector-Jacobian product of an operation at its recorded inputs.

    The forward runs once under autograd on leaf copies of its input-dependent inputs;
    the backward asks autograd for the product with the signal. Several projected units
    of one image are carried by a batched product (one row of the grad per unit), so
    shapes computed inside the model (``x.size(0)``) stay those of the recorded batch.
    """

    def __init__(self, kind: str, inplace: bool = False) -> None:
        super().__init__()
        self.kind, self.inplace = kind, inplace

    def record(self, execute: Callable[[dict], Any], inputs: dict[Any, Any], copy: set) -> tuple[Any, Any]:
        """Run ``execute(feed)`` on leaves standing for ``inputs``; keep what the product needs.

        ``copy`` are the inputs that a later in-place operation overwrites: they are cloned.
        """
        with torch.enable_grad():
            leaves = {node: tree_map(lambda v, c=node in copy: _leaf(v, c), value) for node, value in inputs.items()}
            feed = leaves if not self.inplace else {n: tree_map(_clone, v) for n, v in leaves.items()}
            output = execute(feed)
        flat, _ = tree_flatten(output)
        outputs = [t if isinstance(t, Tensor) and t.requires_grad else None for t in flat]
        return tree_map(lambda v: v.detach() if isinstance(v, Tensor) else v, output), (leaves, outputs)

    def backward(self, signal: Any, saved: Any, rows: Tensor | None) -> dict[Any, Any]:
        """The signal for each recorded input node (a structure like its value; None: no signal)."""
        leaves, outputs = saved
        signals, _ = tree_flatten(signal)
        pairs = [(o, s) for o, s in zip(outputs, signals) if o is not None and s is not None]
        nodes = list(leaves)
        flat_leaves = [tree_flatten(leaves[n])[0] for n in nodes]
        wanted = [t for group in flat_leaves for t in group if isinstance(t, Tensor) and t.requires_grad]
        if not pairs or not wanted:
            return {}
        batched = rows is not None
        grad_outputs = [_spread(s, rows, o.shape[0]) if rows is not None else s for o, s in pairs]
        with torch.enable_grad():
            grads = torch.autograd.grad([o for o, _ in pairs], wanted, grad_outputs, retain_graph=True,
                                        allow_unused=True, is_grads_batched=batched)
        found = iter(grads)
        result = {}
        for node, group in zip(nodes, flat_leaves):
            picked = [_gather(next(found), rows) if isinstance(t, Tensor) and t.requires_grad else None
                      for t in group]
            result[node] = tree_unflatten(picked, tree_flatten(leaves[node])[1])
        return result

    def extra_repr(self) -> str:
        return f"{self.kind}: exact vector-Jacobian product"


def _leaf(value: Any, copy: bool) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        # an inference-mode tensor cannot join autograd; its clone can
        return (value.clone() if copy or value.is_inference() else value.detach()).requires_grad_(True)
    return value


def _clone(value: Any) -> Any:
    return value.clone() if isinstance(value, Tensor) else value


def _spread(signal: Tensor, rows: Tensor, images: int) -> Tensor:
    """(B, ...) signals of units on images ``rows`` -> (B, N, ...) batched grad outputs."""
    if images == 1:
        return signal.unsqueeze(1)
    spread = signal.new_zeros(signal.shape[0], images, *signal.shape[1:])
    spread[torch.arange(signal.shape[0], device=signal.device), rows] = signal
    return spread


def _gather(grad: Tensor | None, rows: Tensor | None) -> Tensor | None:
    if grad is None or rows is None:
        return grad
    return grad[torch.arange(grad.shape[0], device=grad.device), rows]  # (B, N, ...) -> (B, ...)


class Unsupported:
    """Stands in the mirror for an operation with no rule; raising only if a projection crosses it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unsupported({self.reason})"


def take_rows(saved: Any, rows: Tensor | None) -> Any:
    """The recorded data of the images that the projected units belong to.

    A single image's switches and masks are broadcast without copying.
    """
    if rows is None or saved is None:
        return saved
    if isinstance(saved, Tensor):
        if saved.shape[0] == 1:
            return saved.expand(len(rows), *saved.shape[1:])
        return saved.index_select(0, rows)
    if isinstance(saved, tuple) and not isinstance(saved, torch.Size):
        return tuple(take_rows(item, rows) for item in saved)
    return saved
