"""Side effects of the pipeline: the DVC project the assets run stages in.

Assets never compute anything themselves: each one asks ``DvcProject`` to reproduce the DVC
stage of the same name (``dvc repro --single-item``), so a Dagster materialization and a plain
``dvc repro`` run the same ``recsys`` commands and produce the same artifacts, and DVC skips a
stage whose code, data and params are unchanged. The data version Dagster records is the
content hash DVC wrote to ``dvc.lock`` for the stage's outputs.

Paths come from the resource's ``root``; nothing here reads the cwd or the environment at
import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from recsys.config import Params, load_params
from recsys.errors import ConfigError
from recsys.fingerprint import mapping_digest, tree_digest

DVC_POOL = "dvc"
"""Concurrency pool of every step that runs DVC: DVC refuses concurrent locks on one
repository, so the instance limits this pool to one step at a time (``dagster.yaml``)."""
CODE_DIR = "recsys/"
"""Where the code the DVC stages run lives; their other dependencies are data."""
OWNERS = ["team:recsys"]
"""Owners of every asset (shown in the UI; alerting routes by them)."""
VALIDATE_TIMEOUT_S = 1800
STAGE_TIMEOUT_S = 6 * 3600
CPU_ONLY_NOISE = (
    "] Could not find cuda drivers on your machine",
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "] failed call to cuInit",
)
"""What TensorFlow prints on every start on a machine without an NVIDIA driver: dropped from
the streamed log there (and only there); any other error line is kept."""
PRODUCERS = {
    "data/prepared": "prepared_interactions",
    "data/processed": "processed_interactions",
    "models/tuning": "tuned_settings",
}
"""A stage input -> the asset whose DVC stage writes it (``missing_input_hint``); other
``models/<family>`` folders are written by the ``<family>_model`` assets."""


def has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists()


@dataclass(frozen=True)
class StageRun:
    """One ``dvc repro`` of one or more stages."""

    stages: tuple[str, ...]
    skipped: tuple[str, ...]
    """The stages DVC found unchanged (not re-run)."""
    output: str
    seconds: float


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class DvcProject(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A DVC repository with ``dvc.yaml``, ``params.yaml`` and the ``recsys`` CLI on PATH."""

    root: str
    """Repository root (holds ``dvc.yaml``, ``dvc.lock`` and ``params.yaml``)."""
    params_file: str = "params.yaml"
    bin_dir: str = ""
    """Directory of the ``dvc`` and ``recsys`` executables; empty: beside this Python."""

    @property
    def path(self) -> Path:
        return Path(self.root)

    def params(self) -> Params:
        return load_params(self.path / self.params_file)

    def env(self) -> dict[str, str]:
        bin_dir = self.bin_dir or str(Path(sys.executable).parent)
        env = dict(os.environ)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        for name, value in (
            ("DVC_NO_ANALYTICS", "1"),
            ("GX_ANALYTICS_ENABLED", "False"),
            ("BENTOML_DO_NOT_TRACK", "True"),
            ("TF_CPP_MIN_LOG_LEVEL", "2"),
            # Lines (the training loop's one per epoch) arrive while the stage runs.
            ("PYTHONUNBUFFERED", "1"),
        ):
            env.setdefault(name, value)
        return env

    def run(
        self,
        args: list[str],
        *,
        timeout: float = STAGE_TIMEOUT_S,
        log: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run a command (``dvc``/``recsys`` resolved on the venv's PATH) in the root.

        With ``log``, stderr is merged into stdout and each line goes to ``log`` as it arrives
        (a Dagster step's log shows a training run's epochs while it runs); without it, both are
        captured separately."""
        if log is None:
            proc = subprocess.run(
                args,
                cwd=self.path,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            return CommandResult(proc.returncode, proc.stdout, proc.stderr)
        quiet_cuda = not has_nvidia_gpu()
        lines: list[str] = []
        with subprocess.Popen(
            args,
            cwd=self.path,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as popen:
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                popen.kill()

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                assert popen.stdout is not None
                for line in popen.stdout:
                    if quiet_cuda and any(noise in line for noise in CPU_ONLY_NOISE):
                        continue
                    lines.append(line)
                    if line.strip():
                        log(line.rstrip())
                returncode = popen.wait()
            finally:
                timer.cancel()
        if timed_out.is_set():
            raise subprocess.TimeoutExpired(args, timeout, output="".join(lines))
        return CommandResult(returncode, "".join(lines), "")

    def set_params(self, overrides: Sequence[str]) -> dict[str, Any]:
        """Write ``KEY=VALUE`` overrides into ``params.yaml`` (comments kept, DVC's own YAML
        editor) and validate the result with the strict loader; on any error restore the file
        and raise ``dg.Failure`` naming the override. Returns ``{key: value}`` applied."""
        from dvc.utils.serialize import modify_yaml

        applied: dict[str, Any] = {}
        for text in overrides:
            key, sep, raw = text.partition("=")
            if not sep or not key.strip():
                raise dg.Failure(f"set_params: expected KEY=VALUE, got {text!r}")
            applied[key.strip()] = yaml.safe_load(raw)
        if not applied:
            return applied
        path = self.path / self.params_file
        original = path.read_text(encoding="utf-8")
        try:
            with modify_yaml(path) as data:
                for key, value in applied.items():
                    *parents, leaf = key.split(".")
                    node = data
                    for part in parents:
                        if not isinstance(node.get(part), dict):
                            raise ConfigError(f"set_params: '{key}': no section '{part}'")
                        node = node[part]
                    node[leaf] = value
            load_params(path)
        except (ConfigError, ValueError) as exc:
            path.write_text(original, encoding="utf-8")
            raise dg.Failure(
                description=f"launchpad set_params refused, params.yaml unchanged: {exc}",
                metadata={"overrides": dg.MetadataValue.json(applied)},
            ) from exc
        return applied

    def repro(
        self,
        *stages: str,
        force: bool = False,
        set_params: Sequence[str] = (),
        log: Callable[[str], None] | None = None,
    ) -> StageRun:
        """``dvc repro --single-item`` the stages, in order; ``dg.Failure`` with DVC's text.

        ``set_params`` are written into ``params.yaml`` first (``set_params``); ``log`` gets
        DVC's and the stage's output line by line as it arrives. The caller must hold the
        ``dvc`` pool (DVC refuses a second concurrent repro).
        """
        import time

        self.set_params(set_params)
        before = self.lock()
        start = time.perf_counter()
        args = ["dvc", "repro", "--single-item", *(["--force"] if force else []), *stages]
        result = self.run(args, log=log)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            hint = missing_input_hint(self.missing_inputs(stages))
            raise dg.Failure(
                description=f"`{' '.join(args)}` failed (exit {result.returncode})"
                + (f": {hint}" if hint else ""),
                metadata={"dvc output": dg.MetadataValue.md(_fenced(output[-6000:]))},
            )
        # Unchanged deps, params and outs leave a stage's dvc.lock entry as it was: DVC
        # skipped it (read from dvc.lock, not from DVC's output).
        after = self.lock()
        skipped = tuple(
            s
            for s in stages
            if not force and before.get(s) is not None and before[s] == after.get(s)
        )
        return StageRun(stages, skipped, output, round(time.perf_counter() - start, 2))

    def lock(self) -> dict[str, Any]:
        lock_file = self.path / "dvc.lock"
        if not lock_file.is_file():
            return {}
        raw = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
        stages: dict[str, Any] = raw.get("stages", {})
        return stages

    def out_hashes(self, stage: str) -> dict[str, str]:
        """Output path -> DVC content hash (``md5``) recorded in ``dvc.lock`` for ``stage``."""
        entry = self.lock().get(stage)
        if entry is None:
            raise dg.Failure(f"stage '{stage}' is not in dvc.lock: was it reproduced?")
        return {o["path"]: str(o.get("md5", "")) for o in entry.get("outs", [])}

    def data_version(self, *stages: str) -> dg.DataVersion:
        """The outputs' DVC hash (one output) or a digest of all of them (several)."""
        hashes = {path: h for s in stages for path, h in sorted(self.out_hashes(s).items())}
        if len(hashes) == 1:
            return dg.DataVersion(next(iter(hashes.values())))
        return dg.DataVersion(mapping_digest(hashes)[:32])

    def stage_code(self, stage: str) -> list[str]:
        """The code dependencies (paths under ``recsys/``) that ``dvc.yaml`` lists for
        ``stage`` (``prepare``, ``train@ease``: a ``foreach`` stage's ``${key}`` filled in);
        none without a ``dvc.yaml``. Data dependencies and outputs are not code."""
        dvc_yaml = self.path / "dvc.yaml"
        if not dvc_yaml.is_file():
            return []
        name, _, key = stage.partition("@")
        stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
        if name not in stages:
            raise KeyError(f"no stage '{name}' in {dvc_yaml}")
        body = stages[name].get("do", stages[name])
        deps = [str(d).replace("${key}", key) for d in body.get("deps", [])]
        return [d for d in deps if d.startswith(CODE_DIR) and "${" not in d]

    def missing_inputs(self, stages: Sequence[str]) -> list[str]:
        """The inputs of ``stages`` (``dvc.yaml`` deps, interpolated by DVC) that are not on
        disk and that no earlier stage of the same list writes, relative to the root."""
        from dvc.exceptions import DvcException
        from dvc.repo import Repo

        missing: list[str] = []
        written: set[str] = set()
        try:
            with Repo(str(self.path)) as repo:
                for name in stages:
                    for stage in repo.stage.collect(f"{self.path / 'dvc.yaml'}:{name}"):
                        for dep in stage.deps:
                            rel = str(dep.def_path)
                            if rel not in written and not Path(dep.fs_path).exists():
                                missing.append(rel)
                        written |= {str(out.def_path) for out in stage.outs}
        except DvcException:  # a dvc.yaml DVC cannot read: its own failure says why
            return []
        return missing

    def code_version(self, stages: Sequence[str] = (), paths: Sequence[str] = ()) -> str:
        """Digest of the code an asset runs: its DVC stages' code dependencies (``stage_code``)
        and further ``paths`` (globs relative to the root; directories with every file under
        them). Dagster's ``code_version``: it changes exactly when one of those files changes."""
        files = {self.path / c for s in stages for c in self.stage_code(s)}
        files |= {match for p in paths for match in self.path.glob(p)}
        return self.fingerprint(sorted(files), None)[:16]

    def fingerprint(self, paths: list[Path], extra: Any) -> str:
        """The version of files no DVC stage produces (the raw data, code): their names
        relative to the project and their bytes, and ``extra`` (``recsys.fingerprint``)."""
        return tree_digest(paths, root=self.path, extra=extra)


def missing_input_hint(missing: Sequence[str]) -> str | None:
    """What to do when a stage failed because its input does not exist yet (a fresh project
    where an upstream asset never ran; DVC itself only says "[Errno 2] No such file or
    directory"): the asset to materialize first. None when no input is missing."""
    if not missing:
        return None
    rel = missing[0]
    producer = PRODUCERS.get(rel)
    if producer is None and rel.startswith("models/") and rel.count("/") == 1:
        producer = f"{rel.removeprefix('models/')}_model"
    upstream = f"materialize {producer} first" if producer else "materialize what writes it first"
    return (
        f"its input {rel} does not exist yet; {upstream}, or run the whole job "
        "(training_job, or bin/pipeline), which materializes the assets in order"
    )


def _fenced(text: str) -> str:
    return f"```\n{text}\n```"
