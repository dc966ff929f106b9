"""check_channel / check_channels: the one channel check, against hand-written expectations."""

import numpy as np
import pytest

from deconvnet.engine.validate import check_channel, check_channels, check_image
from deconvnet.errors import DeconvError


def test_check_channels_sorts_and_dedupes():
    assert check_channels([7, 0, 7, 3], 8) == [0, 3, 7]
    assert check_channels([np.int64(2)], 4) == [2]


@pytest.mark.parametrize("channels, facts", [
    ([8], ["channel 8 is out of range", "8 channels", "valid 0-7"]),
    ([-1], ["channel -1 is out of range", "valid 0-7"]),
    ([True], ["channel True is out of range"]),
    (["2"], ["channel '2' is out of range"]),
    ([], ["at least one channel"]),
])
def test_check_channels_rejects(channels, facts):
    with pytest.raises(DeconvError) as raised:
        check_channels(channels, 8)
    for fact in facts:
        assert fact in str(raised.value)


def test_check_channels_names_the_layer():
    with pytest.raises(DeconvError, match="out of range: layer conv1 has 4 channels: valid 0-3"):
        check_channels([4], 4, layer="conv1")


def test_check_channel_accepts_numpy_integers_and_gives_the_range():
    assert check_channel("fc", np.int32(9), 10) == 9
    assert type(check_channel("fc", np.int32(9), 10)) is int
    with pytest.raises(DeconvError, match=r"channel 10 is out of range for layer fc: it has 10 channels \(0\.\.9\)"):
        check_channel("fc", 10, 10)
    with pytest.raises(DeconvError, match="expected an integer channel"):
        check_channel("fc", 1.0, 10)


def test_check_image_gives_the_batch_size():
    assert check_image(np.int64(2), 3) == 2
    with pytest.raises(DeconvError, match="image index 3 is out of range: the batch has 3 images"):
        check_image(3, 3)
    with pytest.raises(DeconvError, match="expected an integer image index"):
        check_image(0.5, 3)
