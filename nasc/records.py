"""Reading a stage's JSON record back: one object, a schema version, keys checked with file and key named.

Every stage output (search.json, compile.json, measure.json, manifest.json) is written from one
frozen dataclass and read back only through that class's ``from_dict``; these helpers give every
reader the same errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasc.errors import InputError


def read_record(path: str | Path, schema: str, hint: str) -> dict[str, Any]:
    """The JSON object in `path`, whose "schema" must be `schema`; `hint` says how to make the file."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: missing; {hint}")
    try:
        data = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{file}: not valid JSON ({exc}); {hint}") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a JSON object at the top level; {hint}")
    if data.get("schema") != schema:
        raise InputError(f"{file}: key 'schema' is {data.get('schema')!r}, expected {schema!r}; {hint}")
    return data


def field_of(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str | Path,
             *, optional: bool = False) -> Any:
    """data[key], checked to be of `kind` (None allowed when `optional`); errors name `source` and `key`."""
    if key not in data:
        if optional:
            return None
        raise InputError(f"{source}: key '{key}' is missing; write the file again with this nasc")
    value = data[key]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise InputError(f"{source}: key '{key}' has the wrong type ({type(value).__name__})")
    return value
