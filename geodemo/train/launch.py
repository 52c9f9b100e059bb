"""The ``accelerate`` command line behind geodemo's torchvision guard.

``accelerate launch`` imports timm, hence torchvision, before any user code runs; where torchvision's
C ops do not load (a CUDA torchvision wheel beside CPU torch) that import dies. This entry point runs
the guard first and then hands over to accelerate unchanged:

    python -m geodemo.train.launch launch --num_processes 2 scripts/train.py --preset offline-verifier

With a matching torch/torchvision install, plain ``accelerate launch scripts/train.py ...`` is the same.
"""

from __future__ import annotations

import sys

import geodemo  # noqa: F401  (torchvision guard)


def main() -> int:
    from accelerate.commands.accelerate_cli import main as accelerate_main

    sys.argv[0] = "accelerate"
    return accelerate_main() or 0


if __name__ == "__main__":
    raise SystemExit(main())
