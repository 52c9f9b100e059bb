#!/usr/bin/env python
"""Build a retrieval database of a preset's descriptor: the same as ``python -m geodemo index``.

    # the faithful G3 database from a CSV of photos in a tar (resumable; gallery.path points to it)
    python scripts/build_database.py --out galleries/mp16-g3 --preset g3 --csv mp16pro.csv --images mp16pro.tar
    # from feature shards written by scripts/extract_features.py
    python scripts/build_database.py --out galleries/mp16-g3 --preset g3 --shards features/mp16pro-clip-vit-l14
    # the offline default on the dev photos, exact index
    python scripts/build_database.py --out galleries/dev --preset offline --benchmark im2gps3k-dev --index-kind flat

Run with ``--help`` for every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geodemo.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["index", *sys.argv[1:]]))
