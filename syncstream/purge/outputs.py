"""The outputs a purge reaches: every one the store's catalog records, whatever ``--out`` says.

A purge is a promise about every copy, so it does not take its outputs from the command line:
``--out`` names one the catalog must know (a mistyped path or another working directory's
relative default is refused, exit 2, before anything is recorded), and the purge goes to each
recorded output anyway. An output that cannot be reached (its directory gone, a server down)
leaves the purge unfinished, for the next purge or export to finish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from syncstream.errors import ConfigError, PurgeError
from syncstream.store import StateStore
from syncstream.store.catalog import location

if TYPE_CHECKING:
    from syncstream.lake.storage import ParquetStorage

__all__ = ["Output", "reach", "recorded_outputs"]


class Output(NamedTuple):
    """One output a purge goes through: ``out`` its location (Delta tables there), ``storage``
    the same place as files (None until reached). ``settle``: the export runs in the cache's
    bookkeeping are committed here before the purge (they belong to the output exported to
    last, as the export's own recovery commits them there)."""

    out: str | None
    storage: ParquetStorage | None
    settle: bool = False


def recorded_outputs(state: StateStore, out: str | None, storage: ParquetStorage | None) -> list[Output]:
    """The outputs a purge goes through, the one exported to last at the end; just the cache
    and state (one ``Output(None, None)``) when the store never exported. ``storage``: ``out``
    as files, for the caller's own output (its storage options). ``ConfigError`` when ``out``
    is not recorded, or when the store exported before it kept a catalog (its outputs are not
    known until an export to each records it)."""
    recorded = state.catalog.outputs()
    if out is not None and state.catalog.output(out) is None:
        known = ", ".join(entry.location for entry in recorded) or "none"
        raise ConfigError(
            f"this store never exported to {location(out)}, so a purge there would leave every row "
            f"where it is (outputs it exported to: {known}); give one of those, or no --out (every "
            "one is purged); nothing was purged or recorded"
        )
    if not recorded:
        _, datasets = state.written_by.names()
        if datasets and not state.catalog.keeps_outputs():
            raise ConfigError(
                "this store exported before it recorded its outputs (state version 5 or earlier): "
                "run an export to each of its outputs first (each export records its output), then "
                "purge; nothing was purged or recorded"
            )
        return [Output(None, None)]
    mine = location(out) if out is not None else None
    return [
        Output(entry.location, storage if entry.location == mine else None, settle=i == len(recorded) - 1)
        for i, entry in enumerate(recorded)
    ]


def reach(output: Output) -> Output:
    """``output`` with its storage, checked reachable: its directory (or prefix) is there and
    can be listed. ``PurgeError`` otherwise: its rows cannot be removed now."""
    if output.out is None:
        return output
    from pyarrow import fs as pafs  # noqa: PLC0415 (pyarrow: only with an output)

    from syncstream.lake.storage import storage_for  # noqa: PLC0415

    try:
        storage = output.storage or storage_for(output.out)
        info = storage.filesystem.get_file_info(storage.base)  # a server down raises
        # (an object store has no directories: an empty prefix is just empty)
        if "://" not in output.out and info.type != pafs.FileType.Directory:
            raise PurgeError(f"the recorded output {output.out} is not there (moved or removed?)")
        storage.list_datasets()
    except (OSError, ValueError) as error:
        raise PurgeError(f"the recorded output {output.out} cannot be reached: {error}") from None
    return output._replace(storage=storage)
