"""The main job, headless: ``python -m orchestration.run`` (what ``bin/pipeline`` runs).

Materializes the whole asset graph (``training_job``) in the Dagster instance of
``$DAGSTER_HOME``, so ``dagster dev`` started with the same ``DAGSTER_HOME`` shows this run and
its asset history, then prints what the run decided. Exit status: 0 success, 1 the run failed
(a blocking check or a step; the failing step is named).
"""

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.jobs import training_job
from recsys.data.io import sha256_file

SHOWN = {
    "check_raw_interactions": ("failures", "warnings", "data docs"),
    "processed_interactions": ("rows: train", "rows: test", "data version"),
    "model_metrics": ("metrics",),
    "gate_decision": ("decision",),
    "champion_model": ("registry",),
    "recommender_bento": ("bento",),
}
GATE_CHECK = "check_metric_gate"


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def summarize(result: dg.ExecuteInProcessResult) -> list[str]:
    """Lines for the terminal: each asset's data version, the checks, the metrics table."""
    lines = []
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        name = mat.asset_key.to_user_string()
        meta = mat.metadata
        skipped = _value(meta.get("dvc skipped (unchanged)", "")) or ""
        status = "unchanged (DVC skipped)" if skipped and skipped != "none" else "materialized"
        version = _value(meta.get("data version", "")) or ""
        lines.append(f"  {name:<24} {status:<24} {str(version)[:16]}")
        for key in SHOWN.get(name, ()):
            if key in meta:
                lines.append(f"    {key}:\n{_indent(str(_value(meta[key])))}")
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            name = ev.check_name  # type: ignore[union-attr]
            verdict = "passed" if ev.passed else "FAILED"  # type: ignore[union-attr]
            lines.append(f"  check {name}: {verdict}")
            for key in SHOWN.get(name, ()):
                if key in ev.metadata:  # type: ignore[union-attr]
                    lines.append(f"    {key}: {_value(ev.metadata[key])}")  # type: ignore[union-attr]
    return lines


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def run_tags(root: Path) -> dict[str, str]:
    """Tags of a pipeline run, shown and searchable in the UI's run list: which tunables
    (sha256 of params.yaml), which DVC versions (sha256 of dvc.lock as the run starts) and
    which code (the git commit, ``+dirty`` when the tree has changes) it ran with."""

    def digest(name: str) -> str:
        path = root / name
        return sha256_file(path)[:16] if path.is_file() else "none"

    tags = {
        "recsys/params_sha256": digest("params.yaml"),
        "recsys/dvc_lock_sha256": digest("dvc.lock"),
    }
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
        tags["recsys/git_commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return tags


def main(argv: Sequence[str] | None = None) -> int:
    from orchestration.definitions import REPO_ROOT, defs

    if not os.environ.get("DAGSTER_HOME"):
        print("error: set DAGSTER_HOME (bin/pipeline sets it to .dagster/)", file=sys.stderr)
        return 2
    job = defs.resolve_job_def(training_job.name)
    with dg.DagsterInstance.get() as instance:
        root = Path(os.environ.get("RECSYS_ROOT") or REPO_ROOT)
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, tags=run_tags(root)
        )
    print(f"run {result.run_id} ({training_job.name}) in {os.environ['DAGSTER_HOME']}:")
    print("\n".join(summarize(result)))
    print(final_lines(result))
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        skipped = [e.step_key for e in result.all_events if e.is_step_skipped]
        print(f"FAILED at: {', '.join(s for s in failed if s) or 'a blocking check'}")
        if skipped:
            print(f"not run (downstream of the failure): {', '.join(s for s in skipped if s)}")
        # A rejected challenger is a decision, not a broken pipeline: the champion stays.
        only_gate = all(str(step).endswith(GATE_CHECK) for step in failed)
        return 0 if failed_checks(result) == [GATE_CHECK] and only_gate else 1
    return 0


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [name for name, passed in checks_passed(result).items() if not passed]


def checks_passed(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def final_lines(result: dg.ExecuteInProcessResult) -> str:
    """The gate decision, the champion and the bento, as the README promises."""
    meta: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        meta[mat.asset_key.to_user_string()] = {k: _value(v) for k, v in mat.metadata.items()}
    gate = meta.get("gate_decision")
    champion = meta.get("champion_model")
    bento = meta.get("recommender_bento")
    deployable = checks_passed(result).get("check_bento_deployable", False)
    if gate is None:
        verdict = "not reached"
    elif gate.get("already champion"):
        verdict = f"{gate['challenger']} already is the champion (no change)"
    elif gate.get("already rejected"):
        verdict = f"no new challenger ({gate['challenger']} was rejected earlier; no change)"
    else:
        verdict = f"{'PROMOTE' if gate.get('promote') else 'REJECT'} {gate['challenger']}"
    lines = [
        f"gate decision: {verdict}",
        f"champion:      {champion['champion'] if champion else 'unchanged (see recsys champion)'}",
        f"bento:         {bento['bento'] if bento else 'not built'}"
        + (f" ({'deployable' if deployable else 'NOT deployable'})" if bento else ""),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
