"""`recsys gate / promote / champion / rollback` end to end, as a user runs them (subprocesses).

Two real models (most-popular, then EASE) are fitted on small synthetic data, saved to a
temporary BentoML home, evaluated on the same split and pushed through the gate: the first
run promotes on absolute thresholds, EASE beats most-popular, a worse challenger is rejected,
an ungated model is refused, and rollback restores the previous champion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recsys.evaluation.evaluate import evaluate_topk
from recsys.gate import ModelEvaluation, dir_size, measure_latency, split_fingerprint
from recsys.models.base import Recommender
from recsys.models.baselines import EASE, MostPopular
from recsys.serving import store
from tests.params import complete_params
from tests.recsys.test_models_contract import synthetic_data

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]
RECSYS = [sys.executable, "-m", "recsys.cli"]
REG = "data/registry"  # the default registry, relative to the working directory
CHALLENGE = ["gate", "--params", "params.yaml", "--challenger"]
LABELS = store.ModelLabels(data_version="v1", git_revision="abc", params_hash="p1")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RECSYS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def save_and_evaluate(model: Recommender, name: str, home: Path, out: Path) -> str:
    """Fit, save to the store, evaluate on the shared split; write ``out`` (EVAL.json)."""
    data = synthetic_data()
    model.fit(data)
    fingerprint = split_fingerprint(train=data.split.train, test=data.split.test)
    tag = store.save_model(model, name, LABELS, split_fingerprint=fingerprint, home=home)
    result = evaluate_topk(model, data.split.train, data.split.test, n_boot=100)
    evaluation = ModelEvaluation.from_topk(
        result,
        tag=tag,
        split_fingerprint=fingerprint,
        latency=measure_latency(model, result.user_ids, n_requests=20),
        model_bytes=dir_size(store.model_path(tag, home=home)),
    )
    out.write_text(json.dumps(evaluation.to_dict()))
    return tag


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    return {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": str(repo),
    }


def test_gate_promote_champion_rollback(tmp_path: Path, env: dict[str, str]) -> None:
    home = Path(env["BENTOML_HOME"])
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            complete_params(
                {"gate": {"min_metrics": {"ndcg@10": 0.01}, "min_gain": 0.005, "n_bootstrap": 300}}
            )
        )
    )
    pop = save_and_evaluate(MostPopular(), "recsys-mostpop", home, tmp_path / "pop.json")
    ease = save_and_evaluate(EASE(l2=50.0), "recsys-ease", home, tmp_path / "ease.json")

    # Nothing yet.
    shown = run(["champion"], env, tmp_path)
    assert shown.returncode == 0 and "no champion yet" in shown.stdout

    # First run: absolute thresholds only.
    gated = run(
        [*CHALLENGE, "pop.json", "--out", "d_pop.json"],
        env,
        tmp_path,
    )
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "PROMOTE" in gated.stdout and "first run: only absolute thresholds" in gated.stdout
    promoted = run(["promote", pop, "--decision", "d_pop.json"], env, tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    assert (tmp_path / "data" / "registry" / "champion.json").is_file()

    # An ungated model is refused, with a message and no traceback.
    refused = run(["promote", ease], env, tmp_path)
    assert refused.returncode == 1
    assert "no recorded gate decision" in refused.stderr and "Traceback" not in refused.stderr

    # EASE against the champion, on the same split: better and significant.
    gated = run(
        [*CHALLENGE, "ease.json", "--champion", "pop.json", "--out", "d.json", "--registry", REG],
        env,
        tmp_path,
    )
    assert gated.returncode == 0, gated.stdout
    decision = json.loads((tmp_path / "d.json").read_text())
    assert decision["promote"] and decision["champion"] == pop
    assert {r["rule"] for r in decision["reasons"]} >= {"margin", "significance", "split"}
    # gate --registry recorded the decision where promote looks for it by default.
    promoted = run(["promote", "recsys-ease:latest"], env, tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    assert f"promoted {ease}" in promoted.stdout

    # The reverse comparison is rejected, and the report lists every reason.
    gated = run(
        [*CHALLENGE, "pop.json", "--champion", "ease.json", "--out", "d_rev.json"],
        env,
        tmp_path,
    )
    assert gated.returncode == 1
    assert "REJECT" in gated.stdout and "[FAIL] margin" in gated.stdout
    assert "[FAIL] significance" in gated.stdout and "[PASS] threshold" in gated.stdout

    shown = run(["champion"], env, tmp_path)
    assert f"champion: {ease}" in shown.stdout and pop in shown.stdout

    rolled = run(["rollback"], env, tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    shown = run(["champion"], env, tmp_path)
    assert f"champion: {pop} (rollback" in shown.stdout
    history = (tmp_path / "data" / "registry" / "promotions.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in history] == ["promote", "promote", "rollback"]

    again = run(["rollback"], env, tmp_path)
    assert again.returncode == 2 and "nothing to roll back to" in again.stderr


def test_gate_bad_input_exits_2_with_a_message(tmp_path: Path, env: dict[str, str]) -> None:
    missing = run(["gate", "--challenger", "nope.json", "--out", "d.json"], env, tmp_path)
    assert missing.returncode == 2
    assert "nope.json" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "bad.json").write_text(json.dumps({"format_version": 1, "metrics": {}}))
    malformed = run(["gate", "--challenger", "bad.json", "--out", "d.json"], env, tmp_path)
    assert malformed.returncode == 2 and "tag" in malformed.stderr
    unknown = run(["promote", "recsys-nope:v1"], env, tmp_path)
    assert unknown.returncode == 2 and "not in the BentoML model store" in unknown.stderr
