"""The model stages of the pipeline: ``train`` and ``evaluate`` one candidate family.

``recsys train`` and ``recsys evaluate`` (and so ``dvc.yaml`` and the Dagster assets that run
its stages) are thin adapters over the two functions here. Files on disk::

    models/<family>/                    # Recommender.save (vocabularies and seen items inside)
    models/<family>/train.json          # TrainSummary: facts of the fit, curves, settings, size
    models/metrics/<family>.json        # metrics, CIs, per-user arrays, size, parameters
    reports/timings/train-<family>.json     # untracked: fit seconds, throughput, epoch seconds
    reports/timings/evaluate-<family>.json  # untracked: recommend seconds, latency_ms

Every candidate is scored on the same processed test split (full ranking, PROTOCOL.md
``topk``), and the metrics file names that split by checksum, so the gate can refuse to compare
numbers that came from different splits. The per-user arrays are what the gate's paired
bootstrap needs.

A candidate that cannot learn from the data (``recsys.models.requirements``) is skipped, not
trained on nothing: its directory, metrics file and served ranking record only the reason
(``recsys.skipped``), and it takes no part in the choice of the best candidate.

The DVC-tracked files hold no wall-clock measurement: the same code, params and data give the
same bytes (``dvc.lock`` unchanged by a rerun). What a run measured goes to its timing record
(``recsys.timings``, written when ``timings_dir`` is given, as the CLI does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from recsys.candidates import build_candidate, candidate_settings
from recsys.config import Params
from recsys.data import io
from recsys.data.preprocess import load_processed
from recsys.errors import DataError
from recsys.evaluation.harness import Heldout, fit, score
from recsys.evaluation.results import TopKResult
from recsys.gate import dir_size, measure_latency
from recsys.models.base import META_FILE, Recommender
from recsys.models.requirements import skip_reason
from recsys.skipped import (
    TRAIN_SUMMARY,
    read_summary,
    skipped_metrics,
    skipped_reason,
    write_skipped,
)
from recsys.timings import NOT_MEASURED, read_timings, split_timings, write_timings

FORMAT_VERSION: Final = 1
KS: Final = (10, 20)
"""Cut-offs of the evaluation metrics (``ndcg@10``, ``recall@20``, ...)."""
LATENCY_K: Final = 10
LATENCY_REQUESTS: Final = 200
"""Single-user ``recommend`` calls timed for the latency percentiles (after a warm-up)."""
LATENCY_WARMUP: Final = 5
SPLIT_TABLES: Final = ("train", "val", "test")
TWO_STAGE_PREFIX: Final = "twostage-"
"""Family of the served ranking built over candidate ``<family>`` (``models/twostage-<family>``)."""


def split_fingerprint(processed_dir: Path) -> dict[str, str]:
    """sha256 of each split table: two metrics files are comparable only when these match."""
    split = Path(processed_dir) / "split"
    return {name: io.sha256_file(split / f"{name}.parquet") for name in SPLIT_TABLES}


# --- train ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSummary:
    """``models/<family>/train.json``: what the fit did, for the metadata and the registry."""

    family: str
    config: dict[str, Any]
    train: dict[str, Any]
    """``TrainResult.summary()`` without timings: parameters, device, epochs, seed, ..."""
    history: dict[str, list[float]]
    """Per-epoch curves (``loss``, ``val_ndcg@10``, ...); empty for closed-form models."""
    size_bytes: int
    split: dict[str, str]
    """``split_fingerprint`` of the data it was fitted on."""
    format_version: int = FORMAT_VERSION
    skipped: str | None = None
    """Why the candidate was not trained (its data lacks what it needs); None: trained."""
    settings_from: str = ""
    """``params.yaml``, or ``tuned`` (``recsys tune``'s params file, ``tuning.enabled``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_candidate(
    family: str,
    processed_dir: Path,
    out: Path,
    params: Params,
    *,
    timings_dir: Path | None = None,
    tuned_file: Path | None = None,
) -> TrainSummary:
    """Fit candidate ``family`` on the processed split and save it to ``out`` atomically.

    ``out`` becomes the model's ``Recommender.save`` directory plus ``train.json``; on any
    failure (a NaN loss raises ``TrainingError``) the previous ``out`` stays as it was. With
    ``timings_dir``, the fit's timings go to its ``train-<family>.json`` (``recsys.timings``).
    With ``tuning.enabled``, the settings are those of ``tuned_file`` (``candidate_settings``).
    """
    settings, source = candidate_settings(family, params, tuned_file)
    model = build_candidate(family, params.models, settings)  # bad settings fail before data
    data = load_processed(Path(processed_dir))
    reason = skip_reason(model, data, "topk")  # the pipeline ranks (full ranking)
    if reason is not None:
        summary = TrainSummary(
            family=family,
            config=model.config_dict(),
            train={"model": model.name, "epochs": 0, "n_parameters": 0, "device": "none"},
            history={},
            size_bytes=0,
            split=split_fingerprint(Path(processed_dir)),
            skipped=reason,
            settings_from=source,
        )
        write_skipped(Path(out), summary.to_dict())
        return summary
    result = fit(model, data)
    summary = _save_with_summary(
        model, family, result.history, Path(processed_dir), Path(out), settings_from=source
    )
    write_timings(timings_dir, "train", family, Path(out), result.timings())
    return summary


def _save_with_summary(
    model: Recommender,
    family: str,
    history: Mapping[str, Sequence[float]],
    processed_dir: Path,
    out: Path,
    *,
    settings_from: str = "",
) -> TrainSummary:
    """``model.save(out)`` and its ``train.json``, atomically together (``settings_from``:
    where a trained candidate's settings came from; empty for a composed ranking)."""
    result = model.train_result
    assert result is not None  # fitted or composed
    with io.atomic_dir(out) as tmp:
        model.save(tmp)
        summary = TrainSummary(
            family=family,
            config=model.config_dict(),
            train=split_timings(result.summary())[0],
            history={k: [float(x) for x in v] for k, v in history.items()},
            size_bytes=dir_size(tmp),
            split=split_fingerprint(processed_dir),
            settings_from=settings_from,
        )
        io.write_json(summary.to_dict(), tmp / TRAIN_SUMMARY)
    return summary


def save_candidate(model: Recommender, family: str, processed_dir: Path, out: Path) -> TrainSummary:
    """Save a model trained outside ``train_candidate`` (``recsys update``'s) as the pipeline
    saves a candidate: its directory and ``train.json``, atomically together."""
    return _save_with_summary(model, family, {}, Path(processed_dir), Path(out))


def compose_candidate(
    ranker_dir: Path, retriever_dir: Path, processed_dir: Path, out: Path, params: Params
) -> TrainSummary:
    """The served ranking of one candidate: ``TwoStage.compose`` of the trained ranker in
    ``ranker_dir`` and the retriever in ``retriever_dir`` (``serving.retriever``), with M and
    the index of ``serving`` in params.yaml; saved to ``out`` atomically (no training).

    Its family is ``twostage-<ranker family>``; a ranker that is the retriever itself (the
    two-tower model ranking its own candidates) is loaded and stored once.
    """
    from recsys.models.twostage import TwoStage

    ranker_dir, retriever_dir = Path(ranker_dir), Path(retriever_dir)
    reason = skipped_reason(ranker_dir)
    if reason is not None:  # nothing to serve: the served ranking is skipped alike
        summary = read_train_summary(ranker_dir)
        summary["family"] = f"{TWO_STAGE_PREFIX}{summary['family']}"
        write_skipped(Path(out), summary)
        return TrainSummary(**summary)
    io.require_file(ranker_dir / META_FILE, "trained ranker (run its train stage first)")
    io.require_file(retriever_dir / META_FILE, "trained retriever (serving.retriever)")
    ranker = Recommender.load(ranker_dir)
    same = ranker_dir.resolve() == retriever_dir.resolve()
    retriever = ranker if same else Recommender.load(retriever_dir)
    serving = params.serving
    model = TwoStage.compose(
        ranker, retriever, rerank_top=serving.rerank_top, retrieval=serving.retrieval
    )
    family = read_train_summary(ranker_dir).get("family", ranker.name)
    return _save_with_summary(
        model, f"{TWO_STAGE_PREFIX}{family}", {}, Path(processed_dir), Path(out)
    )


def read_train_summary(model_dir: Path) -> dict[str, Any]:
    return read_summary(model_dir)


# --- evaluate -------------------------------------------------------------------------------
def recommend_latency_ms(
    model: Recommender, user_ids: np.ndarray, *, n_requests: int = LATENCY_REQUESTS, seed: int = 0
) -> dict[str, float]:
    """``latency_ms`` of an evaluation's timing record, and what the gate's latency budget
    reads: the gate's ``measure_latency``, in milliseconds."""
    stats = measure_latency(
        model, user_ids, k=LATENCY_K, n_requests=n_requests, warmup=LATENCY_WARMUP, seed=seed
    )
    return {
        "p50": round(stats.p50_ms, 4),
        "p99": round(stats.p99_ms, 4),
        "max": round(stats.max_ms, 4),
        "n_requests": float(stats.n_requests),
        "k": float(stats.k),
    }


def evaluate_candidate(
    model_dir: Path,
    processed_dir: Path,
    out: Path,
    *,
    ks: Sequence[int] = KS,
    n_boot: int = 1000,
    seed: int = 0,
    latency_requests: int = LATENCY_REQUESTS,
    timings_dir: Path | None = None,
) -> dict[str, Any]:
    """Score the saved model in ``model_dir`` on the processed test split; write ``out``.

    Returns the content of ``out`` (JSON): ``metrics`` (means), ``ci`` (95 % bootstrap),
    ``per_user`` (``user_ids`` and one [n_users] list per metric, for paired tests),
    ``size_bytes``, ``n_parameters``, ``device`` and ``split``: the same for the same model and
    data. With ``timings_dir``, what it measured (``recommend_seconds``, the single-request
    ``latency_ms`` p50/p99/max) goes to its ``evaluate-<family>.json`` (``recsys.timings``).

    Raises:
      DataError: the model directory is missing or incomplete, or nothing can be evaluated.
    """
    model_dir = Path(model_dir)
    reason = skipped_reason(model_dir)
    if reason is not None:
        return skipped_metrics(model_dir, Path(out), split_fingerprint(processed_dir))
    if not (model_dir / META_FILE).is_file():
        raise DataError(
            "no saved model here", where=str(model_dir), fix="run the train stage first"
        )
    data = load_processed(Path(processed_dir))
    if data.split.test.empty:
        raise DataError("the test split is empty: nothing to evaluate", where=str(processed_dir))
    model = Recommender.load(model_dir)
    result = score_topk(model, data, ks, n_boot, seed)
    bad = sorted(k for k, v in result.metrics.items() if not np.isfinite(v))
    if bad:
        raise DataError(f"non-finite metric(s) {bad} for {model.name}", where=str(model_dir))
    train = model.train_result
    summary = read_train_summary(model_dir) if (model_dir / TRAIN_SUMMARY).is_file() else {}
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "family": summary.get("family", model.name),
        "protocol": "topk",
        "metrics": result.metrics,
        "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in result.ci.items()},
        "n_users": result.n_users,
        "n_items": result.n_items,
        "n_test_rows": len(data.split.test),
        "n_boot": n_boot,
        "seed": seed,
        "n_parameters": None if train is None else train.n_parameters,
        "device": None if train is None else train.device,
        "size_bytes": dir_size(model_dir),
        "split": split_fingerprint(processed_dir),
        "per_user": {
            "user_ids": result.user_ids.tolist(),
            **{k: np.asarray(v, dtype=np.float64).tolist() for k, v in result.per_user.items()},
        },
    }
    from recsys.models.twostage import TwoStage

    if isinstance(model, TwoStage):
        report["two_stage"] = two_stage_report(model, data, result.user_ids, ks, n_boot, seed)
    io.write_json(report, Path(out))
    if timings_dir is not None:
        latency = recommend_latency_ms(
            model, result.user_ids, n_requests=latency_requests, seed=seed
        )
        measured = {"recommend_seconds": result.recommend_seconds, "latency_ms": latency}
        write_timings(timings_dir, "evaluate", report["family"], Path(out), measured)
    return report


def score_topk(
    model: Recommender, data: Any, ks: Sequence[int], n_boot: int, seed: int
) -> TopKResult:
    """The shared harness's full-ranking score of ``model`` on the processed test split."""
    result = score(
        model, Heldout(data.split.train, data.split.test), "topk", ks=ks, n_boot=n_boot, seed=seed
    )
    assert isinstance(result, TopKResult)  # protocol "topk"
    return result


def two_stage_report(
    model: Any,
    data: Any,
    user_ids: np.ndarray,
    ks: Sequence[int],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """What the served ranking costs against its ranker scoring every item: the ranker's own
    full-ranking metrics on the same test split (the gate's ``max_two_stage_loss`` budget),
    the ANN's recall@M against exact retrieval, M and the index kind."""
    ranker, retriever = model.parts()
    full = score_topk(ranker, data, ks, n_boot, seed)
    known = user_ids[model.known_users(user_ids)]  # a champion scored on newer data
    return {
        "ranker": ranker.name,
        "retriever": retriever.name,
        "rerank_top": model.config.rerank_top,
        "index": model.index.kind,
        "recall@M": model.retrieval_recall(known),
        "ranker_metrics": {k: float(v) for k, v in full.metrics.items()},
    }


def metrics_file(models_dir: Path, family: str) -> Path:
    """``models/metrics/<family>.json``: what ``recsys evaluate`` (``compose``) writes."""
    return Path(models_dir) / "metrics" / f"{family}.json"


def candidate_timings(
    models_dir: Path, family: str, timings_dir: Path | None
) -> dict[str, float | None]:
    """``fit_seconds`` and ``p99_ms`` of candidate ``family`` from the timing records of the
    run that wrote ``models/<family>`` and its metrics file; None where none measured them
    (and for every value without ``timings_dir``)."""
    if timings_dir is None:
        return {"fit_seconds": None, "p99_ms": None}
    fit = read_timings(timings_dir, "train", family, Path(models_dir) / family)
    evaluated = read_timings(timings_dir, "evaluate", family, metrics_file(models_dir, family))
    return {
        "fit_seconds": None if fit is None else fit.value("fit_seconds"),
        "p99_ms": None if evaluated is None else evaluated.value("latency_ms", "p99"),
    }


def metrics_table(
    reports: Sequence[Mapping[str, Any]],
    primary: str = "ndcg@10",
    timings: Mapping[str, Mapping[str, float | None]] | None = None,
) -> str:
    """A markdown table of candidates (best first by ``primary``), with its 95 % CI; fit
    seconds and p99 latency from ``timings`` (family -> ``candidate_timings``), "—" where this
    run measured none."""
    head = f"| model | {primary} (95 % CI) | recall@10 | hr@10 | coverage@10 | fit s | size MB "
    head += "| p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    rows = [head]
    unmeasured = False
    for r in sorted(reports, key=lambda r: -float(r["metrics"].get(primary, float("-inf")))):
        if r.get("skipped"):
            rows.append(f"| {r['family']} | skipped: {r['skipped']} | | | | | | |")
            continue
        m = r["metrics"]
        lo, hi = r["ci"].get(primary, (float("nan"), float("nan")))
        measured = (timings or {}).get(r["family"], {})
        fit, p99 = measured.get("fit_seconds"), measured.get("p99_ms")
        unmeasured = unmeasured or fit is None or p99 is None
        rows.append(
            f"| {r['family']} | {m.get(primary, float('nan')):.4f} ({lo:.4f}–{hi:.4f}) "
            f"| {m.get('recall@10', float('nan')):.4f} | {m.get('hr@10', float('nan')):.4f} "
            f"| {m.get('coverage@10', float('nan')):.4f} "
            f"| {'—' if fit is None else f'{fit:.1f}'} | {r['size_bytes'] / 1e6:.2f} "
            f"| {'—' if p99 is None else f'{p99:.2f}'} |"
        )
    if unmeasured:
        rows.append(f"\n—: {NOT_MEASURED}")
    return "\n".join(rows)
