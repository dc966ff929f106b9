"""First-layer filters and aliasing (Zeiler & Fergus, ECCV 2014, Sec. 4.1, Fig. 6), in three modules:

- ``compute``: the spectra, aliasing shares and dead filters of a filter bank (``filter_spectra``); writes nothing.
- ``files``: ``filters``, what ``deconv filters`` calls: a model in, the figure, a JSON and a CSV written.
- ``figure``: the matplotlib figure (loaded only when a figure is drawn).
"""

from .compute import (
    BAND_EDGES,
    BAND_NAMES,
    DEAD_FRACTION,
    DEFAULT_DFT_SIZE,
    SORTS,
    FilterSpectra,
    conv_layer,
    dead_by_rms,
    filter_spectra,
    first_conv,
    never_active,
    sort_order,
    weights_label,
)
from .files import FiltersReport, filters, spectrum_csv

__all__ = ["BAND_EDGES", "BAND_NAMES", "DEAD_FRACTION", "DEFAULT_DFT_SIZE", "SORTS", "FilterSpectra", "FiltersReport",
           "conv_layer", "dead_by_rms", "filter_spectra", "filters", "first_conv", "never_active", "sort_order",
           "spectrum_csv", "weights_label"]
