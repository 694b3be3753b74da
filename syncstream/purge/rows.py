"""Which rows a purge removes: pure decisions over a cache file's or a Parquet row's fields.

A row *involves* the purged accounts when one of them is its author, or when the handler that
collected it would have kept it because of them alone: its selector, asked with a population
of just those accounts, says yes (a like or a repost of their post, a reply to it, a quote of
it, a follow of them, their account's event). A delete carries no record, so it goes with its
record: a delete row is removed when its (dataset, URI) is one whose create or update is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from syncstream.registry.handlers import HandlerConfig, Registry
from syncstream.registry.population import Population
from syncstream.registry.types import Operation

__all__ = ["Involvement", "creates_by_kind"]


class Involvement(NamedTuple):
    dids: frozenset[str]
    population: Population  # the purged accounts alone, as the selectors take a population
    creates: Mapping[tuple[str, str, str], HandlerConfig]  # (dataset, record_type, status) -> handler

    @classmethod
    def of(cls, dids: Iterable[str], handlers: Registry) -> Involvement:
        found = frozenset(dids)
        return cls(found, Population(found, found), creates_by_kind(handlers))

    def selected(
        self, config: HandlerConfig | None, operation: str, author: str, record: dict[str, Any] | None
    ) -> bool:
        """Whether a create or update row was collected because of the purged accounts."""
        if author in self.dids:
            return True
        if operation == Operation.DELETE or config is None or config.select is None:
            return False
        return config.select(author, record, self.population)

    def handler(self, dataset: str, record_type: str | None, status: str | None) -> HandlerConfig | None:
        return self.creates.get((dataset, record_type or "", status or ""))


def creates_by_kind(
    handlers: Registry,
) -> dict[tuple[str, str, str], HandlerConfig]:
    """The create handler of each (dataset, record type, follow status): a Parquet row's kind."""
    return {
        (config.dataset.name, config.record_type, config.follow_status or ""): config
        for config in handlers.values()
        if config.operation == Operation.CREATE
    }
