"""Blocking asset checks: a failure stops the run, and nothing downstream materializes.

``check_raw_interactions`` wraps ``recsys data validate`` (the Great Expectations suites of
``recsys/data/validation.py``) and reads its verdict from the JSON ``--result`` it writes
(``recsys.data.validation_verdict.ValidationResult``), never from its output;
``check_metric_gate`` reads the verdict ``gate_decision`` recorded (``recsys gate``, the pure
``recsys.gate.decide``).
"""

from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.data_assets import raw_interactions
from orchestration.defs.promotion_assets import REGISTRY_DIR, read_handoff
from orchestration.defs.resources import VALIDATE_TIMEOUT_S, DvcProject
from orchestration.defs.serving_assets import BENTO_DIR, HANDOFF_FILE, read_bento_handoff
from recsys.data.validation_verdict import ValidationResult

REPORT_DIR = Path("reports") / "validation"
PREPARED_DIR = Path("data") / "prepared"
RESULT_FILE = REPORT_DIR / "latest.json"
"""The ``ValidationResult`` of the check's last ``recsys data validate``."""
LAST_PASS_FILE = REPORT_DIR / "last_pass.json"
"""The last passing verdict and its key (``recsys.data.validation_verdict``): the check reuses
it for an identical input, and the DVC stage ``prepare`` reuses it instead of validating the
same input a second time (``--reuse-verdict``, dvc.yaml)."""


@dg.asset_check(asset=raw_interactions, blocking=True)
def check_raw_interactions(
    context: dg.AssetCheckExecutionContext, dvc: DvcProject
) -> dg.AssetCheckResult:
    """The raw data passes every blocking expectation of the validation suites (schema, ids,
    ratings, timestamps, duplicates, referential integrity, minimum counts); drift against the
    last accepted version is reported as a warning. Links the report and its Data Docs."""
    (dvc.path / RESULT_FILE).unlink(missing_ok=True)
    run = dvc.run(
        [
            "recsys", "data", "validate", "--params", dvc.params_file,
            "--against", str(PREPARED_DIR), "--report-dir", str(REPORT_DIR),
            "--result", str(RESULT_FILE), "--reuse-verdict", str(LAST_PASS_FILE),
        ],
        timeout=VALIDATE_TIMEOUT_S,
        log=context.log.info,
    )  # fmt: skip
    output = (run.stdout + run.stderr).strip()
    if not (dvc.path / RESULT_FILE).is_file():
        # Exit 2: the input could not be read at all (missing file, bad config); no verdict.
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "exit status": run.returncode,
                "output": dg.MetadataValue.md(f"```\n{output[-6000:]}\n```"),
            },
        )
    result = ValidationResult.read(dvc.path / RESULT_FILE)
    summary = (
        f"identical input already validated: {result.report}"
        if result.reused
        else dg.MetadataValue.md(f"```\n{output[-6000:]}\n```")
    )
    return dg.AssetCheckResult(
        passed=result.passed and run.returncode == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "summary": summary,
            "reused verdict": result.reused,
            "failures": result.failures,
            "warnings": result.warnings,
            "validation key": result.key,
            **_report_metadata(dvc.path / result.report),
            "data docs (file)": dg.MetadataValue.path(str(dvc.path / result.data_docs)),
        },
    )


def _report_metadata(report_json: Path) -> dict[str, Any]:
    from recsys.data import io

    if not report_json.is_file():
        return {}
    report = io.read_json(report_json)
    failed = [
        f"{o.get('table')}: {o.get('description') or o.get('expectation')} "
        f"({o.get('unexpected_count') or 0} row(s))"
        for o in report.get("outcomes", [])
        if not o.get("success") and o.get("severity") == "error"
    ]
    # Served by `recsys data docs` (reports/validation, port 8000); readable without network.
    docs = f"http://127.0.0.1:8000/{report_json.parent.name}/data_docs/report.html"
    out: dict[str, Any] = {
        "expectations evaluated": int(report.get("statistics", {}).get("evaluated", 0)),
        **{f"rows: {t}": int(n) for t, n in report.get("row_counts", {}).items()},
        "report": dg.MetadataValue.path(str(report_json)),
        "data docs": dg.MetadataValue.url(docs),
    }
    if failed:
        out["failed expectations"] = dg.MetadataValue.md("\n".join(f"- {f}" for f in failed))
    return out


@dg.asset_check(asset="gate_decision", blocking=True)
def check_metric_gate(dvc: DvcProject) -> dg.AssetCheckResult:
    """The gate blessed the challenger, or there is no new challenger (it already is the
    champion, or the gate already rejected this very model against this champion, so the
    champion stays): fail closed otherwise, and nothing downstream materializes."""
    handoff = read_handoff(dvc)
    passed = bool(
        handoff["promote"] or handoff["already_champion"] or handoff.get("already_rejected")
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "challenger": handoff["challenger"],
            "decision": dg.MetadataValue.md(f"```\n{handoff.get('report', '')}\n```"),
        },
    )


@dg.asset_check(asset="recommender_bento", blocking=True)
def check_bento_deployable(
    context: dg.AssetCheckExecutionContext, dvc: DvcProject
) -> dg.AssetCheckResult:
    """Infra validation: the bento serves on 127.0.0.1, answers /readyz and sample requests
    (``recsys bento validate``); only then is it marked deployable in the registry."""
    return validate_bento(context, dvc)


@dg.asset_check(asset="incremental_update", blocking=True)
def check_update_bento(
    context: dg.AssetCheckExecutionContext, dvc: DvcProject
) -> dg.AssetCheckResult:
    """The promoted update's bento passes the same infra validation as a full run's before it
    is marked deployable (the blue/green front then switches to it)."""
    from recsys.data import io

    outcome_file = dvc.path / "reports" / "update" / "latest.json"
    outcome = io.read_json(outcome_file) if outcome_file.is_file() else {}
    if not outcome.get("promoted"):
        return dg.AssetCheckResult(passed=True, metadata={"bento": "none: nothing promoted"})
    return validate_bento(context, dvc)


def validate_bento(context: dg.AssetCheckExecutionContext, dvc: DvcProject) -> dg.AssetCheckResult:
    """``recsys bento validate`` on the bento of the handoff file, once per bento."""
    from recsys.data import io

    handoff = read_bento_handoff(dvc)
    tag = handoff.get("bento")
    if not tag:
        return dg.AssetCheckResult(passed=False, metadata={"error": "no bento was built"})
    if handoff.get("validated"):
        return dg.AssetCheckResult(passed=True, metadata={"bento": tag, "validated": "earlier"})
    result = dvc.run(
        ["recsys", "bento", "validate", tag, "--registry", str(REGISTRY_DIR)],
        timeout=VALIDATE_TIMEOUT_S,
    )
    output = (result.stdout + result.stderr).strip()
    context.log.info(output)
    if result.returncode == 0:
        io.write_json({**handoff, "validated": True}, dvc.path / BENTO_DIR / HANDOFF_FILE)
    return dg.AssetCheckResult(
        passed=result.returncode == 0,
        metadata={"bento": tag, "report": dg.MetadataValue.md(f"```\n{output[-6000:]}\n```")},
    )
