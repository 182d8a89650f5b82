"""Strict construction of frozen config dataclasses from plain dictionaries.

Configs arrive as YAML (validated by the workflow's JSON schema) or as CLI JSON strings. Python
code takes frozen dataclasses; this module builds them and rejects unknown keys with a message
that names the key and lists the valid ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, TypeVar

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
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise SMIError(f"missing required key(s) {missing} in {context}.")
    converted = {}
    for name, value in values.items():
        # YAML and JSON give lists; frozen dataclasses want hashable tuples.
        converted[name] = _to_tuple(value) if isinstance(value, list) else value
    try:
        return cls(**converted)  # type: ignore[call-arg]
    except (TypeError, ValueError) as exc:
        raise SMIError(f"invalid value in {context}: {exc}") from exc


def _to_tuple(value: list[Any]) -> tuple[Any, ...]:
    return tuple(_to_tuple(v) if isinstance(v, list) else v for v in value)


def to_dict(obj: Any) -> dict[str, Any]:
    """Convert a dataclass to a JSON-friendly dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=list))


def config_hash(*parts: Any) -> str:
    """A short, stable hash of JSON-serialisable config parts (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
