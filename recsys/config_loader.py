"""Strict construction of the configuration dataclasses from ``params.yaml`` mappings.

``from_dict`` builds a (nested) frozen dataclass from a mapping and ``replace`` changes fields
of one, both coercing each value to its annotated type (unions, literals, tuples, mappings and
nested sections) and failing with a ``ConfigError`` that names the key path on an unknown key,
a wrong type or a bad value. ``recsys.config`` re-exports both.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from recsys.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], raw: object, where: str) -> T:
    """Build dataclass ``cls`` from a mapping; ``where`` names the key path in errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        scope = f"'{where}'" if where else "the top level"
        raise ConfigError(
            f"unknown key(s) {unknown} in {scope}", fix=f"valid keys are {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, key_path(where, k)) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid '{where}': {exc}") from exc


def key_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that coerces and checks the changed values like ``from_dict``."""
    hints = typing.get_type_hints(type(obj))
    checked = {k: _coerce(hints[k], v, k) if k in hints else v for k, v in changes.items()}
    return dataclasses.replace(obj, **checked)  # type: ignore[type-var]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, type) and hasattr(tp, "from_raw"):  # sections with free-form keys
        return tp.from_raw(value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(exc.what)
        raise ConfigError(f"'{where}' = {value!r} does not fit {tp}", fix="; ".join(errors))
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"'{where}' = {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        value_type = (get_args(tp) or (str, str))[1]
        if value_type is not str:  # typed values (numbers, nested sections) are checked too
            return {
                str(k): _coerce(value_type, v, key_path(where, str(k))) for k, v in value.items()
            }
        return {str(k): str(v) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        return tuple(_coerce(get_args(tp)[0], v, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{where}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{where}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{where}' must be a string, got {value!r}")
        return value
    return value
