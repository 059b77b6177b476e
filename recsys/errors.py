"""Errors a user can act on: what went wrong, where, and how to fix it.

The CLI prints these as a few plain lines and exits with status 2 (bad input) instead of a
traceback; library callers can catch ``RecsysError`` and read the fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class RecsysError(Exception):
    """Base class for every error the project raises on purpose."""

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled with its fields (a worker process's error reaches the caller whole)."""
        return (_rebuild, (type(self), self.__dict__))

    def render(self) -> str:
        lines = [self.what]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        return "\n".join(lines)


def _rebuild(cls: type[RecsysError], state: dict[str, object]) -> RecsysError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.render())
    return error


class DataError(RecsysError):
    """An input file is missing, unreadable or malformed."""


class ConfigError(RecsysError):
    """``params.yaml`` or a command-line option is invalid."""


class Refused(RecsysError):
    """A check said no (a verdict on valid input, not bad input): the CLI exits with status 1."""

    exit_code = 1


class ValidationFailed(Refused):
    """A blocking expectation failed; ``report`` holds the details."""

    def __init__(self, what: str, *, report: object, where: str | None = None) -> None:
        self.report = report
        super().__init__(what, where=where, fix="see the report; fix the data or the thresholds")


@contextmanager
def malformed(what: str, *, where: str, fix: str) -> Iterator[None]:
    """Turn a ``KeyError`` or ``TypeError`` raised while building ``what`` from parsed JSON into a
    ``DataError`` that names it, ``where`` it was read and the ``fix``."""
    try:
        yield
    except (KeyError, TypeError) as exc:
        raise DataError(f"malformed {what}: {exc!r}", where=where, fix=fix) from exc


def location(path: object, *, column: str | None = None, row: int | None = None) -> str:
    """``file 'x.csv', column 'rating', line 12`` - the *where* of an error message.

    ``row`` is a 1-based line number in the file (header included where there is one).
    """
    parts = [f"file '{path}'"]
    if column is not None:
        parts.append(f"column '{column}'")
    if row is not None:
        parts.append(f"line {row}")
    return ", ".join(parts)
