"""Entry point of `python -m dispatch_core.bench`."""

import sys

from . import main

sys.exit(main())
