"""``python -m platelab``: the same as the ``platelab`` console script."""

import sys

from platelab.cli import main

sys.exit(main())
