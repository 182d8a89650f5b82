"""The config file itself: YAML syntax, the JSON schema, and one-line messages.

Every problem becomes one :class:`~smi.errors.SMIError` line that starts with the config key
path (``teachers.vit-s.model: ...``); :func:`exit_config_error` prints it as the only line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from smi.errors import SMIError

#: Longest instance excerpt quoted in a schema message.
QUOTE_CHARS = 80
#: Where the workflow's schema lives, relative to the workflow folder.
SCHEMA_PATH = "workflow/schemas/config.schema.yaml"


def exit_config_error(exc: BaseException) -> NoReturn:
    """Print ``config error: <message>`` as the only line and exit 1 (used by the Snakefile).

    Snakemake would print an exception raised while parsing the Snakefile with its location
    and a traceback; one line is what a user needs.
    """
    message = " ".join(str(exc).split())  # one line, whatever the message held
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(1)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (or JSON) config, reporting a syntax error with its line and column.

    Raises:
        SMIError: For a missing file, a syntax error, or a document that is not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SMIError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = exc.problem or exc.context or "syntax error"
        raise SMIError(
            f"{path}, {where}: YAML syntax error: {what}; check the indentation and brackets there."
        ) from None
    except yaml.YAMLError as exc:
        raise SMIError(f"{path}: YAML syntax error: {exc}.") from None
    if not isinstance(data, dict):
        raise SMIError(
            f"{path} must hold a mapping of config keys (run, datasets, teachers, ...), got {type(data).__name__}."
        )
    return data


def check_schema(config: Mapping[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Validate ``config`` against the JSON schema; raise one line for the most telling problem.

    An unknown key is reported before the "required" errors it causes (a misspelled required
    key is both), then the deepest problem, since it names the most specific key.

    Raises:
        SMIError: ``<key path>: <problem>; allowed keys / expected type ...``.
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(dict(config)))
    if not errors:
        return
    error = min(
        errors, key=lambda e: (e.validator != "additionalProperties", -len(e.absolute_path), str(e.absolute_path))
    )
    raise SMIError(_schema_message(error))


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def _schema_message(error: Any) -> str:
    path = _key_path(error.absolute_path)
    kind, schema, instance = error.validator, error.schema, error.instance
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed)) if isinstance(instance, dict) else []
        keys = ", ".join(f"{path}.{k}" if path != "(top level)" else k for k in extra)
        return f"{keys}: unknown key(s); allowed keys here are {', '.join(allowed)}."
    if kind == "required":
        missing = [k for k in schema.get("required", []) if isinstance(instance, dict) and k not in instance]
        return f"{path}: missing required key(s) {', '.join(missing)}."
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{path}: must be of type {expected}, got {_quote(instance)} ({type(instance).__name__})."
    if kind == "enum":
        return f"{path}: must be one of {', '.join(map(str, error.validator_value))}, got {_quote(instance)}."
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{path}: must be {sign} {error.validator_value}, got {_quote(instance)}."
    if kind == "pattern":
        return f"{path}: {_quote(instance)} does not match the allowed form {error.validator_value}."
    if kind in ("minItems", "maxItems"):
        return f"{path}: must have {'at least' if kind == 'minItems' else 'at most'} {error.validator_value} item(s)."
    return f"{path}: {error.message[:200]}"


def at_key(key: str, exc: SMIError) -> SMIError:
    """``exc`` as one error whose message starts with the config key path ``key``."""
    return SMIError(f"{key}: {exc}")
