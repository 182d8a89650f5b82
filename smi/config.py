"""Strict construction of frozen config dataclasses from plain dictionaries.

Configs arrive as YAML (validated by the workflow's JSON schema) or as CLI JSON strings. Python
code takes frozen dataclasses; this module builds them and rejects unknown keys with a message
that names the key and lists the valid ones, so a typo never silently falls back to a default.
Values are checked against the field's type hint (a string where a number belongs names the
key, instead of failing later on a comparison deep inside a run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from smi.errors import SMIError

T = TypeVar("T")


def from_dict(cls: type[T], values: Mapping[str, Any] | None, context: str) -> T:
    """Build the frozen dataclass ``cls`` from ``values``, rejecting unknown keys.

    Args:
        cls: A dataclass type.
        values: Keyword values; ``None`` means all defaults.
        context: Where the values come from (for example ``"method 'smi'"``), used in errors.

    Returns:
        An instance of ``cls``.

    Raises:
        SMIError: If a key is unknown or a required key is missing.
    """
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SMIError(
            f"unknown key(s) {unknown} in {context}; valid keys are {sorted(fields)}. "
            "Check the spelling in your config."
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise SMIError(f"missing required key(s) {missing} in {context}.")
    converted = {}
    hints = _type_hints(cls)
    for name, value in values.items():
        # YAML and JSON give lists; frozen dataclasses want hashable tuples.
        converted[name] = _to_tuple(value) if isinstance(value, list) else value
        if name in hints and not _matches(converted[name], hints[name]):
            raise SMIError(
                f"key '{name}' in {context} must be {_describe(hints[name])}, got {value!r} "
                f"({type(value).__name__}); fix its value in your config."
            )
    try:
        return cls(**converted)  # type: ignore[call-arg]
    except (TypeError, ValueError) as exc:
        raise SMIError(f"invalid value in {context}: {exc}") from exc


def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of ``cls`` (empty if a hint cannot be resolved: then nothing is checked)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference this module cannot see: leave checking to the class
        return {}


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; unknown kinds of hints accept everything."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args)) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return True


def _describe(hint: Any) -> str:
    """A reader's name of a type hint: 'a number', 'a list of integers', 'an integer or null'."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} values"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _to_tuple(value: list[Any]) -> tuple[Any, ...]:
    return tuple(_to_tuple(v) if isinstance(v, list) else v for v in value)


def to_dict(obj: Any) -> dict[str, Any]:
    """Convert a dataclass to a JSON-friendly dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=list))


def config_hash(*parts: Any) -> str:
    """A short, stable hash of JSON-serialisable config parts (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
