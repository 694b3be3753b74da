"""Read strategies: how a handler's record files are found again, derived from its nesting
(``HandlerConfig.read_strategy``). They list a directory; they never read a file. As every reader of the
cache, they skip dot-prefixed file names (a temporary before its rename) and follow no link.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

__all__ = ["read_flat", "read_nested"]


def _visible_files(directory: str) -> Iterator[str]:
    try:
        with os.scandir(directory) as entries:
            for e in entries:
                if e.name.endswith(".json") and e.name[:1] != "." and e.is_file(follow_symlinks=False):
                    yield e.path
    except FileNotFoundError:
        return


def read_flat(directory: str) -> Iterator[str]:
    """Paths of the record files directly in ``directory``."""
    return _visible_files(directory)


def read_nested(directory: str) -> Iterator[str]:
    """Paths of the record files one level down, in ``directory/{nested_key}/``."""
    try:
        with os.scandir(directory) as entries:
            # Nested names are rkeys or DIDs, and an rkey may start with a dot (".0" is valid):
            # only file names are filtered for the dot of a temporary.
            subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return iter(())
    return (path for subdir in sorted(subdirs) for path in _visible_files(subdir))
