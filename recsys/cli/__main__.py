"""``python -m recsys.cli``: the ``recsys`` console script."""

import sys

from recsys.cli import main

sys.exit(main())
