"""``python -m geodemo ...``: see :mod:`geodemo.cli`."""

import sys

from geodemo.cli import main

sys.exit(main())
