"""The physical floor of an export: read every cache file and unlink it, nothing else.

usage: python benchmarks/floor_export.py CACHE_DIR
"""

from __future__ import annotations

import os
import sys


def main(cache: str) -> None:
    for directory, _, files in os.walk(cache):
        for name in files:
            if name.endswith(".json"):
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    handle.read()
                os.unlink(path)


if __name__ == "__main__":
    main(sys.argv[1])
