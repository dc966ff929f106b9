"""``deconv microscope``: a static, linkable site of every unit of a model's layers over an image set.

Zeiler & Fergus (ECCV 2014) show each unit through its strongest activations over a data
set, projected back to pixels (their Fig. 2). The microscope does that for every unit of
every chosen layer and lays the results out as plain files: an index of the layers, a page
per layer with all its units, and a stable page per unit (``SITE/<layer>/<channel>.html``).
See :mod:`deconvnet.tasks.microscope.build` for how a build extends and resumes, and
:mod:`deconvnet.tasks.microscope.site` for the pages.
"""

from .build import MicroscopeSummary, default_layers, microscope

__all__ = ["MicroscopeSummary", "default_layers", "microscope"]
