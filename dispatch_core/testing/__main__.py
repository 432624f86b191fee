"""Entry point of `python -m dispatch_core.testing`: a fake peer until Ctrl-C."""

from . import main

main()
