"""Turn plain TOML/JSON mappings into frozen dataclasses, refusing anything unexpected.

Every error names the source file and the dotted key path, so a user can fix build.toml
without reading code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from nasc.errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "nothing"
    if isinstance(tp, type):
        return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}.get(
            tp.__name__, tp.__name__
        )
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    return str(tp)


def _fail(source: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: key '{path}': {message}")


def convert(tp: Any, value: Any, source: str, path: str) -> Any:
    """Convert `value` to type `tp`, or raise ConfigError naming `source` and `path`."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise _fail(source, path, f"got {value!r}, expected {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            try:
                return convert(arm, value, source, path)
            except ConfigError as exc:
                errors.append(exc)
        raise _fail(source, path, f"got {value!r}, expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise _fail(source, path, f"got {value!r}, expected nothing")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _fail(source, path, f"expected a table, got {value!r}")
        return from_mapping(tp, value, source, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(source, path, f"expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(convert(item_tp, v, source, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(source, path, f"expected a table, got {value!r}")
        args = get_args(tp)
        val_tp = args[1] if args else Any
        return {str(k): convert(val_tp, v, source, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _fail(source, path, f"got {value!r}, expected {_type_name(tp)}")


def from_mapping(cls: type[T], data: Mapping[str, Any], source: str, path: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and missing required keys are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # TOML keys may use dashes or underscores; field names use underscores.
    normalised: dict[str, tuple[str, Any]] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        normalised[name] = (str(key), value)
    unknown = [orig for name, (orig, _) in normalised.items() if name not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        moved = getattr(cls, "MOVED_KEYS", {}).get(unknown[0].replace("-", "_"))
        if moved:
            raise _fail(source, where, f"this key moved to [{moved}]; write it there")
        raise _fail(source, where, f"unknown key; known keys here: {known}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in normalised:
            kwargs[name] = convert(hints[name], normalised[name][1], source, sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise _fail(source, sub, "missing; this key is required")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _fail(source, path or "(top level)", str(exc)) from None


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and mappings to JSON-ready plain values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj
