"""One image, one layer, one figure: ``deconv visualize`` and ``deconvnet.visualize``.

The ranking and the projections under each rule are in ``compute``; ``files.visualize`` turns an
image file into the figure of ``figure`` and writes it when asked.
"""

from .compute import DEFAULT_MODES, DEFAULT_TOP, RuleProjections, project_rules, rule_note, strongest_channels
from .files import Visualization, visualize

__all__ = ["DEFAULT_MODES", "DEFAULT_TOP", "RuleProjections", "Visualization", "project_rules", "rule_note",
           "strongest_channels", "visualize"]
