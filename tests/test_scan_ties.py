"""The streaming top-k: near-equal values tie at the stated tolerance, so the order survives float noise."""

from __future__ import annotations

import random

import torch

from deconvnet.dataset.accumulators import EMPTY, TIE_ATOL, TIE_RTOL, TopK


def _best(values: list[float], k: int, batches: list[list[int]]) -> list[int]:
    """The image indices kept for one channel after merging ``batches`` (lists of image indices) in order."""
    top = TopK.empty(1, k)
    for batch in batches:
        top = top.merge(torch.tensor([[values[i] for i in batch]], dtype=torch.float32), torch.tensor([batch]),
                        torch.full((1, len(batch)), -1, dtype=torch.int64))
    return [i for i in top.images[0].tolist() if i != EMPTY]


def _expected(values: list[float], k: int) -> list[int]:
    """By hand: values rounded to 4 significant digits (all ties here are far tighter, all gaps far wider)."""
    return sorted(range(len(values)), key=lambda i: (-float(f"{values[i]:.4g}"), i))[:k]


def test_near_equal_values_go_to_the_earlier_image():
    one = 1.0
    above = float(torch.tensor(1.0).nextafter(torch.tensor(2.0)))  # one float32 step above 1.0
    # image 3 is higher by one unit in the last place: a different summation order could give either
    assert _best([0.5, 2.0, one, above], 3, [[0, 1, 2, 3]]) == [1, 2, 3]
    assert _best([0.5, 2.0, above, one], 3, [[0, 1, 2, 3]]) == [1, 2, 3]
    # a real difference (above the tolerance) still decides
    clearly = 1.0 + 10 * (TIE_RTOL + TIE_ATOL)
    assert _best([0.5, 2.0, one, clearly], 3, [[0, 1, 2, 3]]) == [1, 3, 2]


def test_order_and_noise_do_not_change_the_result():
    rng = random.Random(0)
    base = [float(rng.choice([3, 5, 8, 13])) * rng.choice([1.0, 0.01, 100.0]) for _ in range(60)]  # many exact ties
    expected = _expected(base, 9)
    for trial in range(20):
        # noise as a different batch composition gives: a few float32 ulps up or down
        noisy = [v * (1 + rng.choice([-3, -1, 0, 1, 2]) * 1.2e-7) for v in base]
        order = list(range(len(base)))
        rng.shuffle(order)
        size = rng.choice([1, 4, 7, 60])
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        assert _best(noisy, 9, batches) == expected, trial


def test_positions_are_found_only_for_images_that_can_enter_and_the_lists_equal_brute_force():
    """batch_scores finds a position only where TopK asks; the kept lists equal sorting every image."""
    from deconvnet.dataset.accumulators import batch_scores

    generator = torch.Generator().manual_seed(11)
    maps = torch.randn(40, 6, 5, 7, generator=generator)  # 40 images, 6 channels
    maps[:, 2] = 3.0  # a channel where every image ties everywhere: the earliest images, position 0
    channels = torch.tensor([0, 2, 5])
    top, asked_per_batch = TopK.empty(3, 4), []
    for start in range(0, 40, 8):
        batch = maps[start:start + 8].contiguous(memory_format=torch.channels_last)
        values, locate = batch_scores(batch, channels)

        def counting(asked, locate=locate):
            asked_per_batch.append(int(asked.sum()))
            return locate(asked)
        top = top.add(values, torch.arange(start, start + 8), counting)
    for row, channel in enumerate(channels.tolist()):
        flat = maps[:, channel].flatten(1)
        best = sorted(range(40), key=lambda i: (-float(flat[i].max()), i))[:4]
        assert top.images[row].tolist() == best
        assert top.positions[row].tolist() == [int(flat[i].argmax()) for i in best]
    assert asked_per_batch[0] == 3 * 8  # the lists are empty: every image may enter
    assert sum(asked_per_batch[1:]) < 3 * 8 * 4  # later, only the images within reach
