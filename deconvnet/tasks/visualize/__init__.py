"""One image, one layer, one figure: ``deconv visualize`` (and ``deconvnet.visualize``), in three modules:

- ``compute``: the channel ranking and the projections under each rule (``strongest_channels``, ``project_rules``).
- ``files``: ``visualize``, what the command calls: an image file in, the figure drawn and written.
- ``figure``: the single-unit and the channel-grid figures (loaded only when a figure is drawn).
"""

from .compute import DEFAULT_MODES, DEFAULT_TOP, RuleProjections, project_rules, rule_note, strongest_channels
from .files import Visualization, visualize

__all__ = ["DEFAULT_MODES", "DEFAULT_TOP", "RuleProjections", "Visualization", "project_rules", "rule_note",
           "strongest_channels", "visualize"]
