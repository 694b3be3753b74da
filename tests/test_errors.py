"""One exception tree: every exception class syncstream defines descends from SyncstreamError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import syncstream
from syncstream import errors
from syncstream.errors import SyncstreamError


def _modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages(syncstream.__path__, "syncstream.")]


def test_every_exception_class_is_under_the_root() -> None:
    """Each exception class defined in any module of syncstream is a SyncstreamError."""
    found: list[type[BaseException]] = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    assert errors.ReplayError in found and len(found) > 10
    strays = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, SyncstreamError)]
    assert strays == []


def test_the_tree_keeps_the_builtin_bases_and_is_documented() -> None:
    """``except ValueError`` and ``except OSError`` callers still catch them, and the module
    docstring names each class of errors.py."""
    assert issubclass(errors.ReplayError, ValueError) and issubclass(errors.RepoError, ValueError)
    assert issubclass(errors.SymlinkInCacheError, OSError)
    assert issubclass(errors.FailpointError, RuntimeError) and issubclass(errors.PurgeError, RuntimeError)
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert f"    {name}" in doc, name
