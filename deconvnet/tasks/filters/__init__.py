"""First-layer filters and aliasing (Zeiler & Fergus, ECCV 2014, Sec. 4.1 and Fig. 6).

A bank's spectra and dead filters are computed in ``compute`` (``filter_spectra``, ``never_active``);
``files.filters`` is the command's function, writing the figure of ``figure``, a JSON and a CSV.
"""

from .compute import FilterSpectra, dead_by_rms, filter_spectra, first_conv, never_active
from .files import FiltersReport, filters

__all__ = ["FilterSpectra", "FiltersReport", "dead_by_rms", "filter_spectra", "filters", "first_conv",
           "never_active"]
