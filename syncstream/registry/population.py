"""The study population routing is decided against: who is studied, who they follow, who left."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Population"]


class Population(NamedTuple):
    study: frozenset[str]
    in_network: frozenset[str]
    withdrawn: frozenset[str] = frozenset()  # purged: nothing they author is collected
