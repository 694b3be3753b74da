"""What a purge removes from the cache's own files once the rows are gone: the export's
bookkeeping (``.export/``) that names the accounts, and directories named after them.

An export killed after recording its run keeps, in ``{claim}.commit``, the keys it was to write
into the state: recovery would write the purged accounts' keys back, after the purge forgot
them. Its ``.files`` and ``.claim`` listings name their cache files and in-network directories.
Each is rewritten whole without those lines (the run's commits are settled before: the tables
already hold its files). In-network activity sits in ``.../{did}/`` directories, which the
purge's file removal empties and leaves; they go too, in the tree and in claims alike.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection

from syncstream.listing import read_lines, write_text_atomic
from syncstream.staging import Staging

__all__ = ["scrub_bookkeeping"]


def scrub_bookkeeping(root: str, dids: Collection[str], uris: Collection[str]) -> int:
    """Remove the accounts from the bookkeeping under ``root`` (the cache) and the directories
    named after them; ``uris``: the involved URIs (their keys go too). How many files and
    directories were changed or removed."""
    staging = Staging(root)
    changed = 0
    for run in staging.runs():
        keys = [k for k in run.keys if not _names(k[1], dids, uris)]
        released = [k for k in run.released if not _names(k[1], dids, uris)]
        if (len(keys), len(released)) != (len(run.keys), len(run.released)):
            import msgspec  # noqa: PLC0415

            staging.record_run(msgspec.structs.replace(run, keys=keys, released=released))
            changed += 1
    for name in staging.names():
        if name.startswith(".") or not name.endswith((".files", ".claim", ".outputs")):
            continue
        lines = read_lines(staging.path(name))
        kept = [line for line in lines if not any(did in line for did in dids)]
        if len(kept) != len(lines):
            write_text_atomic(staging.path(name), "".join(f"{line}\n" for line in kept))
            changed += 1
    for directory, names, _ in os.walk(root):
        for name in [n for n in names if n in dids]:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
            names.remove(name)
            changed += 1
    return changed


def _names(uri: str, dids: Collection[str], uris: Collection[str]) -> bool:
    return uri in uris or any(did in uri for did in dids)
