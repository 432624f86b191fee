"""A stand-in ComfyUI checkout for the managed-worker tests: `main.py` takes ComfyUI's
flags and serves a fake peer (dispatch_core.testing) on the given port."""

import argparse

from dispatch_core.testing import main

parser = argparse.ArgumentParser()
parser.add_argument("--port", default="8188")
parser.add_argument("--listen", default="127.0.0.1")
known, _ = parser.parse_known_args()  # --input-directory and the rest: not needed here
main(["--host", known.listen, "--port", known.port, "--job-seconds", "0.2"])
