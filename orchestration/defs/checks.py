"""Blocking asset checks: a failure stops the run, and nothing downstream materializes.

``check_raw_interactions`` wraps ``recsys data validate`` (the Great Expectations suites of
``recsys/data/validation.py``); ``check_metric_gate`` reads the verdict ``gate_decision``
recorded (``recsys gate``, the pure ``recsys.gate.decide``).
"""

import dataclasses
import re
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.data_assets import raw_input_paths, raw_interactions
from orchestration.defs.promotion_assets import REGISTRY_DIR, read_handoff
from orchestration.defs.resources import VALIDATE_TIMEOUT_S, DvcProject
from orchestration.defs.serving_assets import BENTO_DIR, HANDOFF_FILE, read_bento_handoff

REPORT_DIR = Path("reports") / "validation"
PREPARED_DIR = Path("data") / "prepared"
LAST_PASS_FILE = "last_pass.json"
"""The key and report of the last passing validation (``validation_key``)."""
_REPORT_LINE = re.compile(r"^report: (.+)$", re.MULTILINE)


@dg.asset_check(asset=raw_interactions, blocking=True)
def check_raw_interactions(
    context: dg.AssetCheckExecutionContext, dvc: DvcProject
) -> dg.AssetCheckResult:
    """The raw data passes every blocking expectation of the validation suites (schema, ids,
    ratings, timestamps, duplicates, referential integrity, minimum counts); drift against the
    last accepted version is reported as a warning. Links the report and its Data Docs."""
    from recsys.data import io

    key = validation_key(dvc)
    cache = dvc.path / REPORT_DIR / LAST_PASS_FILE
    last = io.read_json(cache) if cache.is_file() else {}
    if last.get("key") == key and (dvc.path / str(last.get("report", ""))).is_file():
        # The very same input, suites and baseline passed before: the verdict cannot differ.
        return dg.AssetCheckResult(
            passed=True,
            metadata={
                "summary": f"identical input already validated: {last['report']}",
                **_report_metadata(dvc.path / last["report"]),
            },
        )
    result = dvc.run(
        [
            "recsys", "data", "validate", "--params", dvc.params_file,
            "--against", str(PREPARED_DIR), "--report-dir", str(REPORT_DIR),
        ],
        timeout=VALIDATE_TIMEOUT_S,
        log=context.log.info,
    )  # fmt: skip
    output = (result.stdout + result.stderr).strip()
    metadata: dict[str, Any] = {"summary": dg.MetadataValue.md(f"```\n{output[-6000:]}\n```")}
    match = _REPORT_LINE.search(result.stdout)
    if match:
        report_json = dvc.path / match.group(1).strip()
        metadata.update(_report_metadata(report_json))
        if result.returncode == 0:
            io.write_json({"key": key, "report": match.group(1).strip()}, cache)
    if result.returncode not in (0, 1):
        # Exit 2: the input could not be read at all (missing file, bad config).
        metadata["error"] = output.splitlines()[-1] if output else f"exit {result.returncode}"
    return dg.AssetCheckResult(
        passed=result.returncode == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def validation_key(dvc: DvcProject) -> str:
    """What a validation verdict depends on: the raw input, the ``data`` and ``validation``
    params, the suites' code and the accepted baseline profile that drift is measured against."""
    params = dvc.params()
    paths = [
        *raw_input_paths(dvc),
        *(
            dvc.path / "recsys" / "data" / f
            for f in ("validation.py", "sources.py", "synthetic.py")
        ),
        dvc.path / PREPARED_DIR / "profile.json",
    ]
    extra = {
        "data": dataclasses.asdict(params.data),
        "validation": dataclasses.asdict(params.validation),
    }
    return dvc.fingerprint(paths, extra)


def _report_metadata(report_json: Path) -> dict[str, Any]:
    from recsys.data import io

    if not report_json.is_file():
        return {}
    report = io.read_json(report_json)
    stats = report.get("statistics", {})
    failed = [
        f"{o.get('table')}: {o.get('description') or o.get('expectation')} "
        f"({o.get('unexpected_count') or 0} row(s))"
        for o in report.get("outcomes", [])
        if not o.get("success") and o.get("severity") == "error"
    ]
    # Served by `recsys data docs` (reports/validation, port 8000); readable without network.
    docs = f"http://127.0.0.1:8000/{report_json.parent.name}/data_docs/report.html"
    out: dict[str, Any] = {
        "expectations evaluated": int(stats.get("evaluated", 0)),
        "failures": int(stats.get("failures", 0)),
        "warnings": int(stats.get("warnings", 0)),
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
