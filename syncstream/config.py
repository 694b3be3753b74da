"""The one configuration file (``--config FILE``): TOML, one table per command (``[write]``,
``[export]``, ...), each holding option names as the command's options struct spells them
(``cache_dir``, ``state``, ``out``; a nested group's fields by their own names, as on the
command line). Its values become the command line's defaults, so a flag given wins, and the
options struct is then built once, from both, with its checks: nothing is written twice."""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from syncstream.errors import ConfigError
from syncstream.options import Options, options_from

__all__ = ["SECTIONS", "option_fields", "parse_options", "read_config"]

SECTIONS = ("write", "export", "purge", "backfill", "compact", "snapshot", "status", "report", "init")
"""The file's tables: one per command that takes ``--config``."""

_O = TypeVar("_O", bound=Options)


def read_config(path: str) -> dict[str, dict[str, Any]]:
    """The file's tables by command; ``ConfigError`` naming the file for one that cannot be
    read, is not TOML, or has a table (or a key outside any table) that is no command's."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path}: not TOML: {error}") from None
    for name, value in document.items():
        if name not in SECTIONS or not isinstance(value, dict):
            raise ConfigError(
                f"--config {path}: unknown section [{name}]{_nearest(name, SECTIONS)}: the "
                f"sections are {', '.join(f'[{s}]' for s in SECTIONS)}"
            )
    return document


def option_fields(cls: type[Options]) -> dict[str, Any]:
    """Each option of ``cls`` by name -> its type, a nested group's fields among them (the
    command line spells them flat too)."""
    found: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if isinstance(field.type, type) and issubclass(field.type, Options):
            found.update(option_fields(field.type))
        else:
            found[field.name] = field.type
    return found


def parse_options(
    cls: type[_O], parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, fallback: str | None = None
) -> _O:
    """The ``cls`` options of the command line ``argv``, with ``--config FILE``'s table for the
    command (named by the parser's ``prog``, ``syncstream NAME``) under them as defaults; a
    bad file, an unknown or misspelt key, or a value of the wrong type is a usage error
    (exit 2) naming it. A ``fallback`` table gives the options the command shares with it
    (its others are that command's, not errors here); the command's own table wins."""
    section = parser.prog.split()[-1]
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    path = early.parse_known_args(argv)[0].config
    namespace = argparse.Namespace()
    repeated: dict[str, Any] = {}
    if path is not None:
        try:
            document = read_config(path)
            values = {}
            if fallback is not None:
                shared = option_fields(cls)
                borrowed = {k: v for k, v in document.get(fallback, {}).items() if k in shared}
                values = _section_values(cls, parser, borrowed, path, fallback)
            values.update(_section_values(cls, parser, document.get(section, {}), path, section))
        except ConfigError as error:
            parser.error(str(error))
        actions = {action.dest: action for action in parser._actions}
        for name, value in values.items():
            action = actions[name]
            action.required = False  # the file gives it
            if isinstance(action, argparse._AppendAction):
                repeated[name] = value  # given on the command line, the flags replace the file's list
            else:
                setattr(namespace, name, value)  # argparse keeps it unless a flag sets another
    args = parser.parse_args(argv, namespace=namespace)
    for name, value in repeated.items():
        if not getattr(args, name):
            setattr(args, name, list(value))
    return options_from(cls, parser, args)


def _section_values(
    cls: type[Options], parser: argparse.ArgumentParser, table: Mapping[str, Any], path: str, section: str
) -> dict[str, Any]:
    """The table's values, each checked against its option's type: a string is read as the
    command line reads it (``15m`` for a duration, ``3000/300`` for a rate)."""
    fields = option_fields(cls)
    actions = {a.dest: a for a in parser._actions if a.dest in fields}
    values: dict[str, Any] = {}
    for name, given in table.items():
        if name not in actions:
            raise ConfigError(
                f"--config {path}: [{section}] has no option {name!r}{_nearest(name, actions)} "
                f"(its options: {', '.join(sorted(actions))})"
            )
        action = actions[name]
        try:
            value = msgspec.convert(_as_typed(action, given), fields[name], strict=False)
        except (argparse.ArgumentTypeError, ValueError, TypeError, msgspec.ValidationError) as error:
            raise ConfigError(f"--config {path}: [{section}] {name}: {error}") from None
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ConfigError(f"--config {path}: [{section}] {name}: {value!r} is not one of {choices}")
        values[name] = list(value) if isinstance(action, argparse._AppendAction) else value
    return values


def _as_typed(action: argparse.Action, given: Any) -> Any:
    """A string (or each string of a list) read by the option's own parser, as argparse
    reads the command line's."""
    if not callable(action.type):
        return given
    if isinstance(given, str):
        return action.type(given)
    if isinstance(given, list):
        return [action.type(item) if isinstance(item, str) else item for item in given]
    return given


def _nearest(name: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
