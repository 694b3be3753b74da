"""The backfills' scratch directories (``syncstream-backfill-*``): each holds one repository
(its CAR and the index of its blocks) while it is walked, so each is in the store's catalog
from its creation until it is gone. A backfill killed mid-repository leaves one: the next
backfill and the next purge remove what the catalog lists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from syncstream.store.catalog import Catalog

__all__ = ["PREFIX", "forget_if_gone", "make_scratch", "remove_scratch"]

PREFIX = "syncstream-backfill-"


def make_scratch(catalog: Catalog, did: str, root: str | None, now: float) -> Path:
    """A new scratch directory for ``did``'s repository under ``root`` (None: the system's
    temporary directory), recorded before anything is written to it."""
    directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    catalog.add_scratch(str(directory), did, now)
    return directory


def forget_if_gone(catalog: Catalog, directory: Path | None) -> None:
    """Drop a scratch directory from the catalog once its job has removed it."""
    if directory is not None and not directory.exists():
        catalog.drop_scratch(str(directory))


def remove_scratch(catalog: Catalog, dids: Collection[str] | None = None) -> int:
    """Remove the scratch directories the catalog lists (those of ``dids`` only, when given: a
    writer may be using the others) and forget them; how many were still on disk."""
    removed = 0
    for entry in catalog.scratch():
        if dids is not None and entry.did not in dids:
            continue
        if os.path.lexists(entry.location):
            shutil.rmtree(entry.location, ignore_errors=True)
            removed += 1
        if not os.path.lexists(entry.location):
            catalog.drop_scratch(entry.location)
    return removed
