"""Model registry: BentoML store round trip, the atomic champion pointer, promotion rules,
concurrent promotions and rollback (RELIABILITY.md items 17-19, 21, 28, 31).

Every test uses its own BentoML home under ``tmp_path``; nothing touches ``~/bentoml``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from recsys.config import GateConfig
from recsys.errors import DataError, RecsysError
from recsys.gate import GateDecision, ModelEvaluation, decide
from recsys.models.base import Recommender
from recsys.models.baselines import EASE, MostPopular
from recsys.serving import store
from recsys.serving.store import ModelLabels, PromotionRefused, Registry
from tests.recsys.test_models_contract import synthetic_data

SPLIT = "s" * 64
LABELS = ModelLabels(
    data_version="d41d8cd9", git_revision="abc123", params_hash="0f0f", metrics={"ndcg@10": 0.2}
)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*")
CFG = GateConfig(min_metrics={"ndcg@10": 0.0}, min_gain=0.0, n_bootstrap=200)


@functools.cache
def fitted(name: str) -> Recommender:
    model: Recommender = MostPopular() if name == "mostpop" else EASE(l2=50.0)
    model.fit(synthetic_data())
    return model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(path))
    return path


@pytest.fixture
def registry(tmp_path: Path, home: Path) -> Registry:
    return Registry(tmp_path / "registry", home=home)


def save(name: str = "mostpop", split: str | None = SPLIT) -> str:
    return store.save_model(fitted(name), f"recsys-{name}", LABELS, split_fingerprint=split)


def bless(reg: Registry, tag: str, champion: str | None, *, better: bool = True) -> GateDecision:
    """Record a gate decision for ``tag`` (promoted when ``better``) against ``champion``."""
    users = np.arange(200)
    base = np.random.default_rng(0).uniform(0, 0.3, len(users))

    def ev(t: str, scores: np.ndarray) -> ModelEvaluation:
        return ModelEvaluation(
            tag=t,
            split_fingerprint=SPLIT,
            metrics={"ndcg@10": float(scores.mean())},
            per_user={"ndcg@10": scores},
            user_ids=users,
            latency_p99_ms=1.0,
            model_bytes=1000,
        )

    challenger = ev(tag, base + (0.1 if better else -0.1))
    decision = decide(challenger, None if champion is None else ev(champion, base), CFG)
    assert decision.promote is better
    reg.record_decision(decision)
    return decision


# --- the BentoML model store ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mostpop", "ease"])
def test_save_load_roundtrip_gives_identical_scores(home: Path, name: str) -> None:
    tag = save(name)
    assert tag.startswith(f"recsys-{name}:")
    assert store.model_path(tag).is_relative_to(home / "models")
    loaded = store.load_model(tag)
    model = fitted(name)
    users = synthetic_data().vocab.user_ids[:25]
    ids, scores = model.recommend(users, k=10)
    ids2, scores2 = loaded.recommend(users, k=10)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    assert type(loaded) is type(model)


def test_labels_and_metadata_are_recorded(home: Path) -> None:
    tag = save()
    info = store.model_info(tag)
    assert info["labels"] == {
        "data_version": "d41d8cd9",
        "git_revision": "abc123",
        "params_hash": "0f0f",
        "ndcg_at_10": "0.2",
    }
    assert info["metadata"]["split_fingerprint"] == SPLIT
    assert info["metadata"]["recsys_model"] == "mostpop"
    assert store.resolve_tag("recsys-mostpop:latest") == tag


def test_unknown_tag_is_a_clear_error(home: Path) -> None:
    with pytest.raises(DataError, match="not in the BentoML model store") as err:
        store.load_model("recsys-nope:abc")
    assert err.value.fix and "BENTOML_HOME" in err.value.fix


def test_helpers_for_labels() -> None:
    assert store.params_hash({"a": 1, "b": 2}) == store.params_hash({"b": 2, "a": 1})
    assert store.params_hash({"a": 1}) != store.params_hash({"a": 2})
    rev = store.git_revision(Path(__file__).parent)
    assert rev == "unknown" or len(rev.split("-")[0]) == 40


# --- promotion -----------------------------------------------------------------------------------
def test_first_promotion_writes_pointer_and_history(registry: Registry) -> None:
    tag = save()
    bless(registry, tag, None)
    result = registry.promote(tag)
    assert result.changed
    champion = registry.champion()
    assert champion is not None and champion.tag == tag and champion.previous == ()
    assert any("first run" in r for r in champion.reasons)
    [entry] = registry.history()
    assert (entry["action"], entry["tag"], entry["from"]) == ("promote", tag, None)
    assert entry["reasons"] and entry["time"].endswith("+00:00")


def test_promote_refuses_an_unblessed_tag(registry: Registry) -> None:
    tag = save()
    with pytest.raises(PromotionRefused, match="no recorded gate decision") as err:
        registry.promote(tag)
    assert err.value.exit_code == 1
    assert registry.champion() is None and registry.history() == []


def test_promote_refuses_a_rejected_model(registry: Registry) -> None:
    first, second = save(), save("ease")
    bless(registry, first, None)
    registry.promote(first)
    bless(registry, second, first, better=False)
    with pytest.raises(PromotionRefused, match="did not bless"):
        registry.promote(second)
    champion = registry.champion()
    assert champion is not None and champion.tag == first


def test_promote_refuses_a_decision_for_another_tag(registry: Registry, tmp_path: Path) -> None:
    blessed, other = save(), save("ease")
    decision = bless(registry, blessed, None)
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(decision.to_dict()))
    with pytest.raises(PromotionRefused, match="not '"):
        registry.promote(other, decision_file=path)


def test_promote_refuses_a_model_saved_from_another_split(registry: Registry) -> None:
    tag = save(split="t" * 64)
    bless(registry, tag, None)
    with pytest.raises(PromotionRefused, match="split"):
        registry.promote(tag)
    untracked = save(split=None)  # trained outside the pipeline: no split recorded
    bless(registry, untracked, None)
    with pytest.raises(PromotionRefused, match="split"):
        registry.promote(untracked)


def test_promote_refuses_a_decision_against_a_stale_champion(registry: Registry) -> None:
    a, b = save(), save("ease")
    bless(registry, a, None)
    bless(registry, b, None)  # also gated as a "first run"
    registry.promote(a)
    with pytest.raises(PromotionRefused, match="re-run the gate"):
        registry.promote(b)


def test_promote_is_idempotent(registry: Registry) -> None:
    tag = save()
    bless(registry, tag, None)
    assert registry.promote(tag).changed
    before = registry.champion_file.read_bytes()
    again = registry.promote("recsys-mostpop:latest")
    assert not again.changed and again.record.tag == tag
    assert registry.champion_file.read_bytes() == before
    assert len(registry.history()) == 1


def test_promote_with_an_explicit_decision_file_records_it(
    registry: Registry, tmp_path: Path
) -> None:
    tag = save()
    decision = bless(registry, tag, None)
    registry.decision_path(tag).unlink()
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(decision.to_dict()))
    registry.promote(tag, decision_file=path)
    assert registry.decision_path(tag).is_file()


# --- atomic pointer and concurrency --------------------------------------------------------------
def test_crash_while_writing_the_pointer_keeps_the_previous_one(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = save(), save("ease")
    bless(registry, a, None)
    registry.promote(a)
    bless(registry, b, a)
    before = registry.champion_file.read_bytes()
    real_replace = os.replace

    def crash(src: str, dst: str) -> None:
        if str(dst).endswith("champion.json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.promote(b)
    monkeypatch.setattr(os, "replace", real_replace)
    assert registry.champion_file.read_bytes() == before
    leftovers = [p.name for p in registry.root.iterdir() if p.name.startswith(".champion")]
    assert leftovers == []
    assert registry.promote(b).changed  # the registry still works afterwards


def test_concurrent_promotions_serialize(registry: Registry) -> None:
    a, b, c = save(), save("ease"), save("ease")
    bless(registry, a, None)
    registry.promote(a)
    bless(registry, b, a)
    bless(registry, c, a)  # both gated against a: only one can win, the other is stale
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(tag: str) -> None:
        barrier.wait()
        try:
            result = Registry(registry.root, home=registry.home).promote(tag)
            outcomes.append("changed" if result.changed else "noop")
        except PromotionRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(t,)) for t in [b, c] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    champion = registry.champion()
    assert champion is not None and champion.tag in (b, c)
    loser = c if champion.tag == b else b
    assert outcomes.count("changed") == 1
    assert outcomes.count("noop") == 3 and outcomes.count("refused") == 4
    history = registry.history()
    assert [e["tag"] for e in history] == [a, champion.tag]
    assert loser not in champion.previous and champion.previous == (a,)


# --- rollback ------------------------------------------------------------------------------------
def test_rollback_restores_the_previous_champion_and_records_it(registry: Registry) -> None:
    a, b = save(), save("ease")
    bless(registry, a, None)
    registry.promote(a)
    bless(registry, b, a)
    registry.promote(b)
    record = registry.rollback()
    assert record.tag == a and record.action == "rollback" and record.previous == ()
    champion = registry.champion()
    assert champion is not None and champion.tag == a
    last = registry.history()[-1]
    assert (last["action"], last["tag"], last["from"]) == ("rollback", a, b)
    with pytest.raises(RecsysError, match="no predecessor"):
        registry.rollback()
    assert "champion: " + a in store.describe(registry)


def test_rollback_without_a_champion_fails_clearly(registry: Registry) -> None:
    with pytest.raises(RecsysError, match="no champion yet"):
        registry.rollback()


def test_corrupt_pointer_is_a_clear_error(registry: Registry) -> None:
    registry.root.mkdir(parents=True)
    registry.champion_file.write_text('{"tag": "x"}')
    with pytest.raises(DataError, match="malformed champion pointer"):
        registry.champion()


def test_a_saved_model_directory_can_be_registered(home: Path, tmp_path: Path) -> None:
    fitted("mostpop").save(tmp_path / "models" / "mostpop")
    tag = store.save_model(tmp_path / "models" / "mostpop", "recsys-mostpop", LABELS)
    assert (store.model_path(tag) / "recommender.json").is_file()
    with pytest.raises(DataError, match="saved model"):
        store.save_model(tmp_path / "empty", "recsys-empty", LABELS)
