"""Selectors: whether an op belongs to a handler, given the study population. Pure functions
of (author DID, record, population); a delete's record is None.

Whom a record points at is asked loosely here (the authority of something shaped like an
AT-URI); what becomes a path component is checked strictly by the handler's nesting, so a
record that claims a study user's post with a bad rkey is rejected with a reason, not dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncstream.registry import references as refs
from syncstream.registry.population import Population

__all__ = [
    "Selector",
    "author_in_network",
    "author_in_population",
    "author_in_study",
    "quotes_study_post",
    "replies_to_study_post",
    "subject_in_study",
    "subject_is_study_post",
]

Selector = Callable[[str, dict[str, Any] | None, Population], bool]


def author_in_study(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    return author in population.study


def author_in_population(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    """An event of a study or an in-network account."""
    return author in population.study or author in population.in_network


def author_in_network(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    return author in population.in_network


def replies_to_study_post(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    return refs.is_post_of(refs.reply_parent_uri(record), population.study)


def subject_is_study_post(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    """A like or a repost of a study user's post."""
    return refs.is_post_of(refs.subject_uri(record), population.study)


def quotes_study_post(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    return refs.is_post_of(refs.quoted_uri(record), population.study)


def subject_in_study(author: str, record: dict[str, Any] | None, population: Population) -> bool:
    """A follow of a study user."""
    found = refs.subject(record)
    return isinstance(found, str) and found in population.study
