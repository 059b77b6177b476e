"""``recsys serve``: serve the champion's deployable bento with ``bentoml serve``.

The registry says what to serve: ``champion.json`` names the champion and
``deployable.json`` the last bento that passed infra validation (``recsys bento validate``).
The bento is served only if it was built around that champion, so a promotion or a rollback
that has not been rebuilt and validated yet is an error naming the fix, not a silent serve of
an older model. ``--bento TAG`` serves a given bento instead (a rollback to an older bento).

``exec_serve`` replaces the calling process with ``bentoml serve``: signals (Ctrl-C, a
supervisor's SIGTERM) reach the server itself, and its exit status is the command's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

from recsys.errors import ConfigError, RecsysError
from recsys.serving import infra, paths, store
from recsys.serving.bentoml_cli import bentoml_command, load_bento
from recsys.serving.store import Registry

BUILD_AND_VALIDATE = (
    "`recsys bento build` (around the registry's champion), then "
    "`recsys bento validate recsys:<version>`: a bento that passes becomes the deployable one"
)


def deployable_bento(registry: Registry) -> str:
    """The tag of the bento to serve: the registry's deployable bento, which must be in the
    bento store and built around the registry's champion. ``ConfigError`` (what, where, how
    to fix) when there is no champion, no deployable bento, or a deployable bento of another
    model; ``DataError`` when the bento is not in the store."""
    champion = registry.champion()
    if champion is None:
        raise ConfigError(
            "there is no champion yet: nothing to serve",
            where=str(registry.champion_file),
            fix="train and evaluate models and promote one (`recsys promote TAG`, or run the "
            f"pipeline), then {BUILD_AND_VALIDATE}",
        )
    deployable_file = registry.root / paths.DEPLOYABLE_FILE
    tag = infra.deployable(registry.root)
    if tag is None:
        raise ConfigError(
            f"the champion {champion.tag} has no deployable bento yet",
            where=str(deployable_file),
            fix=BUILD_AND_VALIDATE,
        )
    built_for = bento_champion(tag, home=registry.home)
    if built_for not in (champion.tag, _resolved(champion.tag, registry.home)):
        raise ConfigError(
            f"the deployable bento {tag} serves {built_for}, not the champion {champion.tag}",
            where=str(deployable_file),
            fix=f"{BUILD_AND_VALIDATE}; or serve a bento by its tag: `recsys serve --bento TAG`",
        )
    return tag


def bento_champion(tag: str, *, home: Path | str | None = None) -> str:
    """The champion model tag a bento was built with (its ``champion`` bento argument);
    ``DataError`` naming the fix when the bento is not in the store."""
    bento = load_bento(tag, home)
    return str(bento.info.args.get("champion", ""))


def _resolved(tag: str, home: Path | str | None) -> str | None:
    """``tag`` with its concrete version, or None when the model is not in the store."""
    try:
        return store.resolve_tag(tag, home=home)
    except RecsysError:
        return None


def serve_command(tag: str, *, host: str | None = None, port: int | None = None) -> list[str]:
    """``bentoml serve TAG`` with ``--host``/``--port`` when given (else BentoML's configured
    ``api_server.http`` host and port: 0.0.0.0:3000 unless ``BENTOML_CONFIG`` says
    otherwise)."""
    cmd = [*bentoml_command(), "serve", tag]  # this environment's bentoml
    if host is not None:
        cmd += ["--host", host]
    if port is not None:
        cmd += ["--port", str(port)]
    return cmd


def exec_serve(cmd: list[str]) -> NoReturn:
    """Replace this process with ``cmd`` (telemetry off unless the user set it)."""
    env = dict(os.environ)
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.execve(cmd[0], cmd, env)
