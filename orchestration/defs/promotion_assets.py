"""Gate decision and champion: adapters over ``recsys gate-candidates`` and ``recsys promote``.

The policy (which served ranking is the challenger, registering it once, re-evaluating the
champion, reusing an earlier rejection) lives in ``recsys.promotion``; the outcome comes back as
one validated JSON file (``GateOutcome``). ``check_metric_gate`` (blocking, checks.py) fails
when the gate did not bless the challenger, so ``champion_model`` never runs after a rejection;
``recsys promote`` re-reads the recorded decision itself (a run that skipped the gate cannot
promote), then the registry is versioned with DVC.
"""

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.plots import bar_chart, image_metadata
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject
from orchestration.defs.served_assets import served_rankings
from recsys.promotion import P99_KEY, GateOutcome
from recsys.timings import NOT_MEASURED

GATE_DIR = Path("reports") / "gate"
OUTCOME_FILE = GATE_DIR / "latest.json"
REGISTRY_DIR = Path("data") / "registry"
REGISTRY_CODE = ("recsys/serving/*store.py", "recsys/serving/registry.py")
"""The BentoML model store and the champion registry (globs, as ``DvcProject.code_version``)."""
GATE_CODE = (
    "recsys/cli",
    "recsys/config*.py",
    "recsys/gate*",  # a module or a package
    "recsys/promotion*",
    "recsys/pipeline*",
    "recsys/timings*",
    "recsys/evaluation",
    *REGISTRY_CODE,
)
"""The code ``recsys gate-candidates`` runs (``gate_decision`` is no DVC stage)."""
PROMOTE_CODE = ("recsys/cli", "recsys/promotion*", *REGISTRY_CODE)
"""The code ``recsys promote`` and ``recsys champion`` run (``champion_model``)."""
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=24 + 6), warn_window=timedelta(hours=24 + 2)
)
"""The nightly schedule (``nightly_training_schedule``, 02:00 UTC) refreshes the champion and
its bento every 24 h: 2 h late warns (a slow or failed run), 6 h late fails (a night without
a successful run). An unchanged night still materializes both (nothing promoted, the same
bento reused), so a fresh asset means "the latest run reached it"."""


def read_handoff(dvc: DvcProject) -> dict[str, Any]:
    """The last ``GateOutcome`` as a mapping (what the blocking check reads)."""
    path = dvc.path / OUTCOME_FILE
    if not path.is_file():
        raise dg.Failure(f"no gate decision at {path}: materialize gate_decision first")
    return GateOutcome.read(path).to_dict()


def build_gate_decision(families: Sequence[str]) -> dg.AssetsDefinition:
    @dg.asset(
        group_name="promotion",
        kinds={"bentoml"},
        deps=[served_rankings],
        owners=OWNERS,
        description="The metric gate on the best served ranking against the current champion, "
        "both evaluated on the same test split (`recsys gate-candidates`): absolute floors, "
        "min gain with a paired bootstrap, latency, size and two-stage budgets. Every served "
        f"ranking ({', '.join(families)}) is registered in the BentoML model store.",
    )
    def gate_decision(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
        data_version = dvc.out_hashes("preprocess").get("data/processed", "unknown")
        result = dvc.run(
            [
                "recsys", "gate-candidates", "--params", dvc.params_file, "--in", "data/processed",
                "--registry", str(REGISTRY_DIR), "--data-version", data_version,
                "--out", str(OUTCOME_FILE),
            ]
        )  # fmt: skip
        if result.returncode not in (0, 1):
            raise dg.Failure(f"recsys gate-candidates failed:\n{result.stderr[-4000:]}")
        outcome = GateOutcome.read(dvc.path / OUTCOME_FILE)
        context.log.info(outcome.report)
        metric = dvc.params().gate.primary_metric
        chart = {
            family: (c[metric], *(c["ci"] or [c[metric], c[metric]]))
            for family, c in outcome.candidates.items()
        }
        return dg.MaterializeResult(
            metadata={
                "challenger": outcome.challenger,
                "champion": outcome.champion or "none (first run)",
                "promote": outcome.promote,
                "already champion": outcome.already_champion,
                "already rejected": outcome.already_rejected,
                "decision": dg.MetadataValue.md(f"```\n{outcome.report}\n```"),
                "registered": dg.MetadataValue.json(outcome.registered),
                "skipped (data lacks what they need)": dg.MetadataValue.json(outcome.skipped),
                "served rankings": dg.MetadataValue.json(
                    {
                        family: {
                            **c,
                            P99_KEY: NOT_MEASURED if c.get(P99_KEY) is None else c[P99_KEY],
                        }
                        for family, c in outcome.candidates.items()
                    }
                ),
                f"{metric} served, by candidate": image_metadata(
                    context,
                    bar_chart(chart, f"{metric} served (95 % CI)", ylabel=metric),
                    "gate-decision",
                    "served rankings",
                ),
            }
        )

    return gate_decision


@dg.asset(
    group_name="promotion",
    kinds={"bentoml", "dvc"},
    deps=["gate_decision"],
    pool=DVC_POOL,
    owners=OWNERS,
    freshness_policy=NIGHTLY_FRESHNESS,
)
def champion_model(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
    """The champion pointer (data/registry/champion.json, with history for rollback): the gated
    challenger is promoted through ``recsys promote``, which re-checks the recorded decision.
    The registry directory is versioned with DVC (data/registry.dvc)."""
    outcome = GateOutcome.read(dvc.path / OUTCOME_FILE)
    if outcome.promote:
        result = dvc.run(["recsys", "promote", outcome.challenger, "--registry", str(REGISTRY_DIR)])
        context.log.info((result.stdout + result.stderr).strip())
        if result.returncode != 0:
            raise dg.Failure(f"promotion of {outcome.challenger} refused or failed")
        added = dvc.run(["dvc", "add", "--quiet", str(REGISTRY_DIR)])
        if added.returncode != 0:
            raise dg.Failure(f"dvc add {REGISTRY_DIR} failed:\n{added.stderr[-4000:]}")
    described = dvc.run(["recsys", "champion", "--registry", str(REGISTRY_DIR)])
    version = dvc.fingerprint([dvc.path / REGISTRY_DIR / "champion.json"], None)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "champion": outcome.challenger if outcome.promote else (outcome.champion or "none"),
            "changed": outcome.promote,
            "registry": dg.MetadataValue.md(f"```\n{described.stdout.strip()}\n```"),
        },
    )
