"""Search spaces: what each model lets a tuner change, declared next to its config.

A model class declares ``search_space: ClassVar[SearchSpace]`` beside its ``config_class``: a
mapping from a constructor field to a ``Float``, ``Int`` or ``Choice``. The declarations are
plain data (no Optuna import), so a model module stays cheap to import; ``suggest`` turns them
into ``trial.suggest_*`` calls. Ranges are written for any dataset (orders of magnitude, not
values fitted to ML-100K); ``widen`` makes sure the settings a study starts from (params.yaml,
``--params``) are inside the space, so the first trial scores exactly those settings and the
study's best is never below them on validation.

``Choice`` options may be tuples (layer widths): Optuna stores categorical choices as
``None``/``bool``/``int``/``float``/``str`` only, so such options are stored under a label
(``"64-32-16"``) and decoded back here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from recsys.errors import ConfigError

__all__ = [
    "Choice",
    "Float",
    "Int",
    "Param",
    "SearchSpace",
    "TrialLike",
    "base_values",
    "check_space",
    "decode",
    "describe",
    "fits",
    "label",
    "search_space_of",
    "suggest",
    "widen",
]


@dataclass(frozen=True)
class Float:
    """A real value in ``[low, high]``; ``log``: sampled uniformly in log space (``low > 0``)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]``; ``log``: sampled uniformly in log space (``low >= 1``)."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (ints, floats, strings, bools or tuples of them)."""

    options: tuple[Any, ...]


Param = Float | Int | Choice
SearchSpace = Mapping[str, Param]
"""Constructor field -> its range; empty: nothing to tune."""


class TrialLike(Protocol):
    """The part of ``optuna.trial.Trial`` that ``suggest`` calls."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def label(value: Any) -> Any:
    """How a ``Choice`` option is stored by Optuna: tuples/lists as ``"a-b-c"``, else as is."""
    if isinstance(value, list | tuple):
        return "-".join(str(v) for v in value)
    return value


def search_space_of(cls: type) -> SearchSpace:
    """The ``search_space`` a model class declares; empty when it declares none."""
    space = getattr(cls, "search_space", None)
    return dict(space) if space else {}


def check_space(space: SearchSpace, fields: Mapping[str, Any] | None, owner: str) -> None:
    """``ConfigError`` for a range that cannot be sampled or a field the config lacks."""
    for name, param in space.items():
        if fields is not None and name not in fields:
            raise ConfigError(f"{owner}.search_space names '{name}', which is not a setting")
        if isinstance(param, Choice):
            if not param.options:
                raise ConfigError(f"{owner}.search_space.{name}: a Choice needs options")
            continue
        bad_log = param.log and param.low <= 0
        if not param.low <= param.high or bad_log:
            raise ConfigError(f"{owner}.search_space.{name}: bad range {param}")


def base_values(space: SearchSpace, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``fields`` (a model's full config) gives the space's settings."""
    return {name: fields[name] for name in space if name in fields}


def widen(space: SearchSpace, base: Mapping[str, Any]) -> dict[str, Param]:
    """``space`` with each range stretched (each ``Choice`` extended) to hold ``base``'s value,
    so the settings a study starts from can be its first trial."""
    out: dict[str, Param] = {}
    for name, param in space.items():
        value = base.get(name)
        if value is None or (isinstance(value, bool) and not isinstance(param, Choice)):
            out[name] = param
        elif isinstance(param, Choice):
            known = [label(o) for o in param.options]
            extra = () if label(value) in known else (_frozen(value),)
            out[name] = Choice((*param.options, *extra))
        elif isinstance(param, Int):
            n = int(value)
            low = min(param.low, n) if not param.log or n >= 1 else param.low
            out[name] = dataclasses.replace(param, low=low, high=max(param.high, n))
        else:
            x = float(value)
            bottom = min(param.low, x) if not param.log or x > 0 else param.low
            out[name] = dataclasses.replace(param, low=bottom, high=max(param.high, x))
    return out


def fits(space: SearchSpace, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base``'s values as a trial stores them (labels), for those inside ``space``."""
    out: dict[str, Any] = {}
    for name, param in space.items():
        if name not in base or base[name] is None:
            continue
        value = base[name]
        if isinstance(param, Choice):
            if label(value) in [label(o) for o in param.options]:
                out[name] = label(value)
        elif param.low <= value <= param.high:
            out[name] = int(value) if isinstance(param, Int) else float(value)
    return out


def suggest(trial: TrialLike, space: SearchSpace) -> dict[str, Any]:
    """One value per setting from ``trial`` (decoded: tuple options come back as tuples)."""
    out: dict[str, Any] = {}
    for name, param in space.items():
        if isinstance(param, Float):
            out[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
        elif isinstance(param, Int):
            out[name] = trial.suggest_int(name, param.low, param.high, log=param.log)
        else:
            by_label = {label(o): o for o in param.options}
            out[name] = by_label[trial.suggest_categorical(name, list(by_label))]
    return out


def decode(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """A stored trial's params as constructor values: Optuna's labels back to their options
    (``"64-32"`` -> ``(64, 32)``), and a value stored as JSON (the ``chosen`` attribute: a
    tuple option became a list) back to a tuple."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        param = space.get(name)
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(param, Choice):
            value = {label(o): o for o in param.options}.get(value, value)
        out[name] = value
    return out


def describe(space: SearchSpace) -> dict[str, str]:
    """One line per setting, for logs and docs: ``{"l2": "1..1e+05 (log)"}``."""
    out: dict[str, str] = {}
    for name, p in space.items():
        if isinstance(p, Choice):
            out[name] = " | ".join(str(label(o)) for o in p.options)
        else:
            out[name] = f"{p.low:g}..{p.high:g}" + (" (log)" if p.log else "")
    return out


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
