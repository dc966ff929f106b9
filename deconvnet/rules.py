"""The deconvnet's layers: one mirror per forward operation, and the table that picks it.

Zeiler & Fergus (ECCV 2014, Sec. 2.1) reverse each layer of the convnet: max pooling
by unpooling with the recorded switches, a convolution by the transposed convolution
with the same filters, and a ReLU by rectifying the signal again. Every mirror here is
the adjoint of its forward operation (for a ReLU, the rule of the chosen technique),
so a whole projection can be checked against autograd.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import DeconvError

# What each technique does at a ReLU: (rectify the backward signal, apply the forward mask).
# They differ nowhere else.
RELU_RULES: dict[str, tuple[bool, bool]] = {
    "deconvnet": (True, False),  # Zeiler & Fergus 2014
    "guided": (True, True),  # guided backpropagation, Springenberg et al. 2015
    "backprop": (False, True),  # the plain gradient, Simonyan et al. 2014
}
MODES = tuple(RELU_RULES)


def check_mode(mode: str) -> None:
    if mode not in RELU_RULES:
        raise DeconvError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")


class Mirror(nn.Module):
    """The backward step of one forward operation.

    ``run`` executes the forward operation and returns what the backward step needs
    (switches, masks, shapes); ``forward(signal, saved, mode)`` maps the signal at
    the operation's output to one signal per tensor input, in argument order.
    """

    def run(self, call: Callable[[], Any], args: list[Any], mode: str) -> tuple[Any, Any]:
        return call(), None


class TransposedConv2d(nn.ConvTranspose2d, Mirror):
    """A convolution's adjoint: ConvTranspose2d sharing the convolution's weight tensor."""

    def __init__(self, conv: nn.Conv2d) -> None:
        if conv.padding_mode != "zeros":
            raise DeconvError(
                f"padding_mode={conv.padding_mode!r} has no transposed convolution here; expected 'zeros'"
            )
        super().__init__(
            conv.out_channels, conv.in_channels, conv.kernel_size, stride=conv.stride,
            padding=_numeric_padding(conv), dilation=conv.dilation, groups=conv.groups,
            bias=False, device="meta",
        )
        del self.weight
        self.weight = conv.weight  # tied: the very same Parameter, never a copy

    def run(self, call, args, mode):
        return call(), args[0].shape

    def forward(self, signal: Tensor, input_shape: torch.Size, mode: str) -> list[Tensor]:
        # output_size picks the output_padding that restores the forward input's size
        return [super().forward(signal, output_size=list(input_shape[-2:]))]


def _numeric_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise DeconvError("padding='same' with an even kernel pads unevenly; use numeric padding")
        return tuple(t // 2 for t in total)
    return conv.padding


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

    def forward(self, signal: Tensor, saved: tuple[Tensor, torch.Size], mode: str) -> list[Tensor]:
        switches, input_shape = saved  # switches: (N, C, h, w) flat positions in each H*W plane
        n, c, height, width = signal.shape[0], signal.shape[1], input_shape[-2], input_shape[-1]
        unpooled = signal.new_zeros(n, c, height * width)
        unpooled.scatter_add_(2, switches.reshape(n, c, -1), signal.reshape(n, c, -1))
        return [unpooled.view(n, c, height, width)]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, switches=recorded"


class Rectify(Mirror):
    """A ReLU's rule: rectify the signal (deconvnet), and/or apply the forward mask."""

    def __init__(self, upper: float | None = None) -> None:
        super().__init__()
        self.upper = upper  # 6 for ReLU6: its gradient is zero above the cap as well

    def run(self, call, args, mode):
        output = call()
        if not RELU_RULES[mode][1]:
            return output, None
        # The output is read, not the input: an in-place ReLU has already overwritten it,
        # and output > 0 exactly where input > 0.
        mask = output > 0
        if self.upper is not None:
            mask &= output < self.upper
        return output, mask

    def forward(self, signal: Tensor, mask: Tensor | None, mode: str) -> list[Tensor]:
        rectify, masked = RELU_RULES[mode]
        if rectify:
            signal = signal.clamp_min(0)
        if masked:
            signal = signal * mask
        return [signal]

    def extra_repr(self) -> str:
        return "" if self.upper is None else f"mask 0 < x < {self.upper:g}"


class ChannelScale(Mirror):
    """BatchNorm in eval mode is y = a * x + b per channel; its adjoint multiplies by a."""

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        if norm.running_var is None:
            raise DeconvError("a BatchNorm without running statistics is not a fixed linear map")
        self._norm = [norm]  # a list, so the norm is read but not registered as our submodule

    def forward(self, signal: Tensor, saved: None, mode: str) -> list[Tensor]:
        norm = self._norm[0]
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        return [signal * scale.view(1, -1, *[1] * (signal.dim() - 2))]


class Passthrough(Mirror):
    """Identity in eval mode (Dropout, Identity), or skipped as in the paper (LocalResponseNorm)."""

    def __init__(self, note: str = "") -> None:
        super().__init__()
        self.note = note

    def forward(self, signal: Tensor, saved: None, mode: str) -> list[Tensor]:
        return [signal]

    def extra_repr(self) -> str:
        return self.note


class TransposedLinear(Mirror):
    """A fully connected layer's adjoint: multiply by the transposed (tied) weight."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight  # tied

    def forward(self, signal: Tensor, saved: None, mode: str) -> list[Tensor]:
        return [signal @ self.weight]  # (N, out) @ (out, in) -> (N, in)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} -> {self.weight.shape[1]}, weight tied"


class SpreadAverage(Mirror):
    """AdaptiveAvgPool2d's adjoint: each output cell spreads its signal evenly over its window."""

    def run(self, call, args, mode):
        return call(), args[0].shape

    def forward(self, signal: Tensor, input_shape: torch.Size, mode: str) -> list[Tensor]:
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

    def forward(self, signal: Tensor, saved: None, mode: str) -> list[Tensor]:
        height, width = signal.shape[-2:]
        return [signal[..., self.top:height - self.bottom, self.left:width - self.right]]

    def extra_repr(self) -> str:
        return f"left={self.left}, right={self.right}, top={self.top}, bottom={self.bottom}"


class Reshape(Mirror):
    """flatten/view/reshape: the adjoint puts the values back in the input's shape."""

    def run(self, call, args, mode):
        return call(), args[0].shape

    def forward(self, signal: Tensor, input_shape: torch.Size, mode: str) -> list[Tensor]:
        return [signal.reshape(signal.shape[0], *input_shape[1:])]


class Sum(Mirror):
    """An addition (a residual connection) sends the signal to every summand."""

    def run(self, call, args, mode):
        return call(), [a.shape for a in args if isinstance(a, Tensor)]

    def forward(self, signal: Tensor, shapes: list[torch.Size], mode: str) -> list[Tensor]:
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

    def forward(self, signal: Tensor, sizes: list[int], mode: str) -> list[Tensor]:
        return list(signal.split(sizes, dim=self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# The rule table: forward operation -> builder of its mirror. Exact types only: a subclass
# may compute something else in its forward.
MODULE_RULES: dict[type, Callable[[nn.Module], Mirror]] = {
    nn.Conv2d: TransposedConv2d,
    nn.MaxPool2d: Unpool2d,
    nn.ReLU: lambda m: Rectify(),
    nn.ReLU6: lambda m: Rectify(upper=6.0),
    nn.BatchNorm2d: ChannelScale,
    nn.Dropout: lambda m: Passthrough("Dropout: identity in eval mode"),
    nn.Identity: lambda m: Passthrough(),
    nn.LocalResponseNorm: lambda m: Passthrough("LocalResponseNorm: skipped, as in the paper's deconvnet"),
    nn.AdaptiveAvgPool2d: lambda m: SpreadAverage(),
    nn.ZeroPad2d: Unpad,
    nn.Flatten: lambda m: Reshape(),
    nn.Linear: TransposedLinear,
}
FUNCTION_RULES: dict[Any, Callable[[tuple, dict], Mirror]] = {
    torch.flatten: lambda args, kwargs: Reshape(),
    torch.reshape: lambda args, kwargs: Reshape(),
    F.relu: lambda args, kwargs: Rectify(),
    torch.relu: lambda args, kwargs: Rectify(),
    F.relu6: lambda args, kwargs: Rectify(upper=6.0),
    F.adaptive_avg_pool2d: lambda args, kwargs: SpreadAverage(),
    operator.add: lambda args, kwargs: Sum(),
    operator.iadd: lambda args, kwargs: Sum(),
    torch.add: lambda args, kwargs: Sum(),
    torch.cat: lambda args, kwargs: Split(args[1] if len(args) > 1 else kwargs.get("dim", 0)),
}
METHOD_RULES: dict[str, Callable[[tuple, dict], Mirror]] = {
    "view": lambda args, kwargs: Reshape(),
    "reshape": lambda args, kwargs: Reshape(),
    "flatten": lambda args, kwargs: Reshape(),
    "relu": lambda args, kwargs: Rectify(),
    "relu_": lambda args, kwargs: Rectify(),
    "add": lambda args, kwargs: Sum(),
    "add_": lambda args, kwargs: Sum(),
}


def supported_operations() -> str:
    names = [t.__name__ for t in MODULE_RULES]
    names += [getattr(f, "__name__", str(f)) for f in FUNCTION_RULES]
    return ", ".join(sorted(set(names)))


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
