"""Entry point of `python -m dispatch_core`."""

import sys

from .cli import main

sys.exit(main(prog="python -m dispatch_core"))
