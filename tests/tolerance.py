"""How far apart two float32 computations of the same numbers may be: rounding, and only rounding.

Two paths that compute one quantity (a compiled channels-last forward and the eager module,
a batch and a single image, a cropped window and the full image, a recorded and a traced
graph, one and two processes) add the same products in different orders, and the order a
CPU kernel picks depends on the CPU (AVX2 or AVX-512), the memory layout and the batch. So
their float32 results agree to rounding, not to the bit; a test that demands more passes on
one machine and fails on the next.

The bound used here is the classical one for a sum (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., Sec. 3.1): a float32 sum of n products, in any order, is
within gamma_n * sum|products| of the exact value, gamma_n = n*u / (1 - n*u), u = 2**-24.
Two orders are within twice that of each other. Exact equality stays only where the
arithmetic is exact (integer-valued networks, pure data movement).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

UNIT_ROUNDOFF = 2.0 ** -24  # float32


def reordering_bound(terms: int, magnitude: float) -> float:
    """The largest difference between two float32 orders of a sum of ``terms`` products whose
    absolute values add up to at most ``magnitude``.

    >>> reordering_bound(1, 1.0) > 0 and reordering_bound(27, 100.0) < 1e-3
    True
    """
    gamma = terms * UNIT_ROUNDOFF / (1 - terms * UNIT_ROUNDOFF)
    return 2 * gamma * magnitude


def assert_same_sums(got: Tensor, expected: Tensor, *, terms: int, magnitude: float) -> None:
    """``got`` and ``expected`` are one layer's sums, computed in two orders (see reordering_bound)."""
    torch.testing.assert_close(got, expected, rtol=0, atol=reordering_bound(terms, magnitude))


def assert_same_projection(got: Tensor, expected: Tensor, *, layers: int, fan_in: int) -> None:
    """Two paths to one projection (or any result of ``layers`` stacked sums of up to ``fan_in`` terms).

    Through several layers the worst-case bound above is far too loose to test anything
    (cancellation makes sum|products| much larger than the result), so this uses the typical
    error of a reordered sum, sqrt(n)*u of the result's scale per layer (rounding errors add
    like a random walk), with a factor of 16 for margin, and adds it up over the layers. A
    real bug (a wrong unit, a lost switch or mask, a window cut one pixel short) changes the
    map by a sizeable fraction of its peak, orders of magnitude above this.
    """
    scale = float(expected.detach().abs().max())
    assert scale > 0, "an all-zero reference checks nothing"
    atol = 16 * layers * math.sqrt(fan_in) * UNIT_ROUNDOFF * scale
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def network_sums(model: nn.Module) -> dict[str, int]:
    """``layers`` and ``fan_in`` for assert_same_projection: how many convolutions and fully
    connected layers the model has, and the most terms one of their outputs sums (an upper
    bound for any path through it).

    >>> network_sums(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Linear(8, 2)))
    {'layers': 2, 'fan_in': 28}
    """
    fan_ins = [m.weight[0].numel() + (m.bias is not None) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    return {"layers": len(fan_ins), "fan_in": max(fan_ins)}
