"""`python -m methane_seg ...` is `methane-seg ...`."""

import sys

from methane_seg.cli import main

sys.exit(main())
