"""``python -m deconvnet.cli``: the same as ``deconv``."""

import sys

from . import main

sys.exit(main())
