"""The ``recsys benchmark`` run: split files in, PROTOCOL.md outputs and a results table out.

``run_benchmark`` reads a train/test pair in the benchmark's file format (or a generic CSV),
preprocesses it into a ``Processed`` whose split reproduces the files exactly (no cleaning, test
rows predefined), optionally tunes each model on the *validation* files, fits every model on
train, scores it with ``recsys.evaluation`` under one of the three protocols of
``../shared/benchmarks/PROTOCOL.md``, and writes::

    OUT/<model>/recommendations.csv   # topk: user_id,item_id,rank,score (top 50, original ids)
    OUT/<model>/scores.csv            # loo:  user_id,item_id,score (held-out item + negatives)
    OUT/<model>/predictions.csv       # rating: user_id,item_id,prediction (one per test row)
    OUT/<model>/metrics.json          # metrics, CIs, train facts, chosen params, timings
    OUT/<model>/model/                # --save-models only (Recommender.save)
    OUT/results.json, OUT/results.md  # every model, the split's checksums, hardware, versions

With several folds (``rating`` cross-validation over MovieLens' u1..u5) each fold's files go to
``OUT/<model>/<fold>/`` and the model's metrics are the mean (and std) over folds.

Leakage rules: a model is fitted on a copy of the data whose interactions and ``split.test``
hold no test row (the vocabulary still lists every id, as the catalogue does), and tuning sees
only the validation files. Files are written through ``recsys.data.io``; the output directory is
built beside ``OUT`` and swapped in only when every model finished.

Tuning hook: a model class may define ``tune(data, val_split, evaluate_fn, *, metric, config)``
(a classmethod) returning the constructor fields it chose; see ``Tunable``. EASE is tuned with
``tune_ease_lambda`` over ``EASE_L2_GRID``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args

import numpy as np
import pandas as pd

from recsys import __version__
from recsys.config import PreprocessConfig, SplitConfig
from recsys.data import io, sources
from recsys.data.preprocess import InteractionSplit, Processed, preprocess
from recsys.errors import ConfigError, DataError, location
from recsys.evaluation.evaluate import (
    LooResult,
    RatingResult,
    TopKResult,
    cross_validate,
    evaluate_loo,
    evaluate_rating,
    evaluate_topk,
)
from recsys.hardware import hardware
from recsys.models import registry
from recsys.models.base import Recommender, TrainResult
from recsys.schema import (
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    RATING,
    TIMESTAMP,
    USER_ID,
    Dataset,
)

ProtocolName = Literal["topk", "loo", "rating"]
FileFormat = Literal["uidata", "csv"]
Evaluation = TopKResult | LooResult | RatingResult
Log = Callable[[str], None]

PROTOCOLS: Final = get_args(ProtocolName)
FILE_FORMATS: Final = get_args(FileFormat)
OUTPUT_FILES: Final[Mapping[str, str]] = {
    "topk": "recommendations.csv",
    "loo": "scores.csv",
    "rating": "predictions.csv",
}
METRICS_FILE: Final = "metrics.json"
RESULTS_JSON: Final = "results.json"
RESULTS_MD: Final = "results.md"
MODEL_DIR: Final = "model"
LIST_LENGTH: Final = 50
"""Length of each user's list in ``recommendations.csv`` (PROTOCOL.md)."""
TOPK_KS: Final = (10, 20)
LOO_KS: Final = (10,)
TUNE_METRIC: Final[Mapping[str, str]] = {"topk": "ndcg@10", "loo": "ndcg@10", "rating": "neg_rmse"}
"""What tuning maximises on the validation files (``neg_rmse`` = -RMSE)."""
EASE_L2_GRID: Final = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0)
"""EASE lambdas tried on validation (plus the configured one); ml100k-u1 picks 500."""
UIDATA_SUFFIXES: Final = (".tsv", ".tab", ".data", ".base", ".test")
CSV_SUFFIXES: Final = (".csv",)
SPLIT_PREPROCESS: Final = PreprocessConfig(
    min_user_interactions=1,
    min_item_interactions=1,
    split=SplitConfig(method="predefined", val_fraction=0.0),
)
"""Keep every row; test rows are exactly the test file's pairs; no validation carved out."""

MARKDOWN_COLUMNS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "topk": (
        ("NDCG@10", "ndcg@10"),
        ("Recall@10", "recall@10"),
        ("P@10", "precision@10"),
        ("HR@10", "hr@10"),
        ("MRR@10", "mrr@10"),
        ("MAP@10", "map@10"),
        ("NDCG@20", "ndcg@20"),
        ("Recall@20", "recall@20"),
        ("coverage@10", "coverage@10"),
    ),
    "loo": (("HR@10", "hr@10"), ("NDCG@10", "ndcg@10")),
    "rating": (("RMSE", "rmse"), ("MAE", "mae")),
}
"""Table columns of ``results.md`` per protocol (REFERENCE.md's); the first shows its CI."""


def _quiet(_: str) -> None:
    pass


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitFiles:
    """One train/test pair of files, with the sampled negatives for ``loo``."""

    train: Path
    test: Path
    negatives: Path | None = None
    name: str | None = None
    """Fold name (``u1``): its outputs go to ``OUT/<model>/<name>/``; None for one split."""


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything one ``recsys benchmark`` run needs (the CLI builds it from its options)."""

    splits: tuple[SplitFiles, ...]
    """One split, or one per cross-validation fold."""
    protocol: ProtocolName = "topk"
    models: tuple[str, ...] = ()
    """Registry names in run order; empty: every registered model that imports."""
    model_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Constructor fields per model name (``params.yaml`` ``models.<name>``)."""
    val: SplitFiles | None = None
    """Validation train/test (and negatives) files: tuning reads these and nothing else."""
    items: Path | None = None
    """MovieLens ``u.item``: item content for content-aware models."""
    users: Path | None = None
    """MovieLens ``u.user``: user attributes."""
    file_format: FileFormat | None = None
    """None: from each file's suffix (``detect_format``)."""
    save_models: bool = False
    n_boot: int = 1000
    seed: int = 0
    """Bootstrap seed of the CIs."""


def split_files(
    train: Path | None,
    test: Path | None,
    negatives: Path | None = None,
    *,
    data_dir: Path | None = None,
    folds: Sequence[str] = (),
) -> tuple[SplitFiles, ...]:
    """The splits to run: ``train``/``test`` (one split), or ``data_dir/<fold>.base|.test``.

    Raises:
      ConfigError: neither or both ways given, or an incomplete one.
    """
    if folds:
        if train is not None or test is not None or negatives is not None:
            raise ConfigError(
                "--folds replaces --train/--test/--negatives", fix="give one or the other"
            )
        if data_dir is None:
            raise ConfigError("--folds needs --data-dir", fix="e.g. --data-dir data/raw/ml-100k")
        return tuple(
            SplitFiles(train=data_dir / f"{f}.base", test=data_dir / f"{f}.test", name=f)
            for f in dict.fromkeys(folds)
        )
    if data_dir is not None:
        raise ConfigError("--data-dir is only used with --folds", fix="add --folds u1,...,u5")
    if train is None or test is None:
        raise ConfigError(
            "a benchmark needs --train and --test (or --data-dir with --folds)",
            fix="e.g. --train splits/ml100k-u1/train.tsv --test splits/ml100k-u1/test.tsv",
        )
    return (SplitFiles(train=train, test=test, negatives=negatives),)


def parse_names(text: str | None) -> tuple[str, ...]:
    """``"a, b,a"`` -> ``("a", "b")``; None or blank -> ``()``."""
    if not text:
        return ()
    return tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


def load_model_params(path: Path | None) -> dict[str, dict[str, Any]]:
    """The ``models`` section of a parameter file: ``{name: {field: value}}``.

    Read as plain YAML: ``recsys.config.Params`` has no ``models`` section (yet); each model
    checks its own fields strictly when constructed.
    """
    if path is None:
        return {}
    raw = io.read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping", where=str(path))
    section = raw.get("models") or {}
    if not isinstance(section, dict):
        raise ConfigError("'models' must map model names to their settings", where=str(path))
    out: dict[str, dict[str, Any]] = {}
    for name, fields in section.items():
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            raise ConfigError(f"'models.{name}' must be a mapping of fields", where=str(path))
        out[str(name)] = dict(fields)
    return out


def check_config(cfg: BenchmarkConfig) -> None:
    """``ConfigError`` for option combinations the protocol cannot honour."""
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{cfg.protocol}'", fix=f"use one of {PROTOCOLS}")
    if not cfg.splits:
        raise ConfigError("no split to benchmark", fix="pass --train/--test or --folds")
    if cfg.n_boot < 1:
        raise ConfigError(f"--n-boot must be >= 1, got {cfg.n_boot}")
    loo = cfg.protocol == "loo"
    if loo and len(cfg.splits) > 1:
        raise ConfigError("--folds is for the topk and rating protocols, not loo")
    for files in cfg.splits:
        if loo and files.negatives is None:
            raise ConfigError("protocol 'loo' needs the sampled negatives", fix="pass --negatives")
        if not loo and files.negatives is not None:
            raise ConfigError("--negatives is only used by --protocol loo")
    if cfg.val is not None:
        if loo and cfg.val.negatives is None:
            raise ConfigError(
                "tuning under protocol 'loo' needs the validation negatives",
                fix="pass --val-negatives",
            )
        if not loo and cfg.val.negatives is not None:
            raise ConfigError("--val-negatives is only used by --protocol loo")


# --- data ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SplitData:
    """A split read from its files, in one vocabulary (every id of train, test and side files)."""

    name: str | None
    data: Processed
    """``data.split``: train = the train file, test = the test file's pairs, val empty."""
    test: pd.DataFrame
    """[m, 4] the test file's rows as read: relevant items (topk, loo) or rows to predict."""
    negatives: pd.DataFrame | None
    """[n, 4] the loo negatives as read."""
    files: dict[str, dict[str, Any]]
    """Role (``train``, ``test``, ``negatives``) -> ``{"path", "sha256", "rows"}``."""

    @property
    def train(self) -> pd.DataFrame:
        return self.data.split.train

    def fit_data(self) -> Processed:
        """What a model may fit on: the same vocabulary and features, no test row anywhere."""
        split = dataclasses.replace(
            self.data.split, test=self.data.split.test.iloc[:0], negatives=None
        )
        return dataclasses.replace(self.data, interactions=self.data.split.train, split=split)

    def rating_range(self) -> tuple[float, float] | None:
        """(min, max) training rating: rating predictions are clipped to it (as Surprise)."""
        ratings = self.train[RATING].to_numpy(dtype=np.float64)
        low, high = float(ratings.min()), float(ratings.max())
        return (low, high) if high > low else None


def detect_format(path: Path) -> FileFormat:
    """``uidata`` for ``.tsv .tab .data .base .test``; ``csv`` for ``.csv``."""
    suffix = path.suffix.lower()
    if suffix in UIDATA_SUFFIXES:
        return "uidata"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise ConfigError(
        f"cannot tell the format of '{path.name}' from its suffix",
        where=location(path),
        fix="pass --format uidata (tab-separated user, item, rating, timestamp; no header) or "
        "--format csv (header user_id,item_id[,rating,timestamp])",
    )


def read_interactions(path: Path, file_format: FileFormat | None, option: str) -> pd.DataFrame:
    """[n, 4] canonical interactions of a split file, in file order.

    ``uidata``: MovieLens ``u.data`` lines. ``csv``: a header naming ``user_id`` and ``item_id``
    and optionally ``rating`` (default 1.0) and ``timestamp`` (default 0); other columns ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", where=location(path), fix=f"check {option}")
    if (file_format or detect_format(path)) == "uidata":
        return sources.read_ratings_file(path)
    found = io.read_header(path, sep=",", quoted=True)
    io.check_columns(
        path, [USER_ID, ITEM_ID], found, sep=",", fix="write a header user_id,item_id,rating,..."
    )
    columns = [c for c in INTERACTION_COLUMNS if c in found]
    raw = io.read_delimited(
        path,
        columns,
        sep=",",
        header=True,
        quoted=True,
        integer=[c for c in (USER_ID, ITEM_ID, TIMESTAMP) if c in columns],
        numeric=[RATING] if RATING in columns else [],
        what=f"{option} file",
    )
    if RATING not in raw:
        raw[RATING] = 1.0
    if TIMESTAMP not in raw:
        raw[TIMESTAMP] = 0
    return raw.loc[:, list(INTERACTION_COLUMNS)].astype(INTERACTION_DTYPES)


def load_split(
    files: SplitFiles,
    *,
    file_format: FileFormat | None = None,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    prefix: str = "",
) -> SplitData:
    """Read a split's files and build the ``Processed`` that reproduces them exactly.

    Args:
      files: the split's paths.
      file_format: None: from each file's suffix.
      items, users: MovieLens side tables (content features, vocabulary of cold items).
      prefix: ``"val-"`` for the validation files (names the options in errors).

    Raises:
      DataError: a missing or malformed file, an empty one, or train and test sharing a pair.
    """
    roles = {"train": files.train, "test": files.test}
    if files.negatives is not None:
        roles["negatives"] = files.negatives
    frames = {
        role: read_interactions(path, file_format, f"--{prefix}{role}")
        for role, path in roles.items()
    }
    train, test = frames["train"], frames["test"]
    for role in ("train", "test"):
        if frames[role].empty:
            raise DataError(f"the {role} file holds no rows", where=location(roles[role]))
    shared = pd.MultiIndex.from_frame(train[[USER_ID, ITEM_ID]]).isin(
        pd.MultiIndex.from_frame(test[[USER_ID, ITEM_ID]])
    )
    if shared.any():
        example = train.loc[shared, [USER_ID, ITEM_ID]].iloc[0].tolist()
        raise DataError(
            f"{int(shared.sum())} train row(s) repeat a test (user, item) pair, e.g. {example}",
            where=location(roles["train"]),
            fix="train and test files must not share (user_id, item_id) pairs",
        )
    if not np.isfinite(pd.concat([train, test])[RATING].to_numpy(dtype=np.float64)).all():
        raise DataError("a rating is missing or not finite", where=location(roles["train"]))
    dataset = Dataset(
        interactions=pd.concat([train, test], ignore_index=True),
        items=items,
        users=users,
        name=files.name or files.train.parent.name or "benchmark",
    )
    data = preprocess(dataset, SPLIT_PREPROCESS, test_pairs=test)
    info = {
        role: {"path": str(path), "sha256": io.sha256_file(path), "rows": len(frames[role])}
        for role, path in roles.items()
    }
    return SplitData(files.name, data, test, frames.get("negatives"), info)


def read_side_tables(
    items: Path | None, users: Path | None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """MovieLens 100K ``u.item`` / ``u.user`` files (either may be None)."""
    for path, option in ((items, "--items"), (users, "--users")):
        if path is not None and not Path(path).is_file():
            raise DataError("file not found", where=location(path), fix=f"check {option}")
    return (
        sources.read_ml100k_items(items) if items is not None else None,
        sources.read_ml100k_users(users) if users is not None else None,
    )


# --- models -------------------------------------------------------------------------------------
class EvaluateFn(Protocol):
    """``(model, train, heldout, ks) -> result`` with ``result.metrics[metric]`` to maximise."""

    def __call__(
        self, model: Recommender, train: pd.DataFrame, heldout: pd.DataFrame, ks: tuple[int, ...]
    ) -> Any: ...


class Tunable(Protocol):
    """The optional tuning hook a model class may define (as a classmethod).

    ``tune`` fits candidates on ``val_split.train`` and scores them with ``evaluate_fn`` on
    ``val_split.test`` (the validation files' held-out rows; never the real test set), starting
    from ``config`` (the fields the model would otherwise be built with), and returns the
    constructor fields it chose; the benchmark merges them over ``config`` and refits on train.
    """

    @classmethod
    def tune(
        cls,
        data: Processed,
        val_split: InteractionSplit,
        evaluate_fn: EvaluateFn,
        *,
        metric: str,
        config: Mapping[str, Any],
    ) -> Mapping[str, Any]: ...


def resolve_models(
    names: Sequence[str], warn: Log = _quiet
) -> tuple[dict[str, type[Recommender]], dict[str, str]]:
    """Registry classes for ``names``; empty: every registered model that imports.

    Returns:
      ({name: class} in run order, {name: why it was skipped} for the default list).

    Raises:
      ConfigError: an unknown name (the message lists the valid ones), or a requested model
        whose module cannot be imported.
    """
    out: dict[str, type[Recommender]] = {}
    skipped: dict[str, str] = {}
    requested = list(dict.fromkeys(names))
    for name in requested or registry.MODELS:
        try:
            out[name] = registry.model_class(name)
        except (ImportError, AttributeError) as exc:
            if requested:
                raise ConfigError(
                    f"model '{name}' is registered but cannot be imported: {exc}",
                    fix="install what it needs, or leave it out of --models",
                ) from exc
            skipped[name] = str(exc)
            warn(f"skipping model '{name}': {exc}")
    if not out:
        raise ConfigError("no registered model could be imported")
    return out, skipped


@dataclass(frozen=True)
class Tuning:
    """How a model's hyper-parameters were chosen on the validation files."""

    method: str
    metric: str
    chosen: dict[str, Any]
    """Constructor fields merged over the configured ones before the final fit."""
    scores: dict[str, float]
    """Validation score per candidate, where the tuner reports them."""
    seconds: float
    files: dict[str, dict[str, Any]]
    """The validation files used (path, sha256, rows): the test file is never among them."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Scored:
    metrics: dict[str, float]


def validation_evaluator(protocol: ProtocolName, val: SplitData) -> EvaluateFn:
    """The ``evaluate_fn`` that tuners get: the protocol's metric on the validation rows."""

    def evaluate(
        model: Recommender, train: pd.DataFrame, heldout: pd.DataFrame, ks: tuple[int, ...]
    ) -> Any:
        if protocol == "topk":
            return evaluate_topk(model, train, heldout, ks, n_boot=1)
        if protocol == "loo":
            assert val.negatives is not None  # check_config
            return evaluate_loo(model, heldout, val.negatives, ks, n_boot=1)
        r = evaluate_rating(model, train, heldout, clip=val.rating_range(), n_boot=1)
        return _Scored({"neg_rmse": -r.metrics["rmse"], **r.metrics})

    return evaluate


def tune_model(
    cls: type[Recommender],
    fields: Mapping[str, Any],
    val: SplitData,
    protocol: ProtocolName,
) -> Tuning | None:
    """Tune ``cls`` on the validation split; None when it has nothing to tune."""
    from recsys.models.baselines import EASE, tune_ease_lambda

    metric = TUNE_METRIC[protocol]
    evaluate = validation_evaluator(protocol, val)
    start = time.perf_counter()
    hook = getattr(cls, "tune", None)
    if callable(hook):
        chosen = dict(hook(val.data, val.data.split, evaluate, metric=metric, config=dict(fields)))
        scores: dict[str, float] = {}
        method = f"{cls.__name__}.tune"
    elif issubclass(cls, EASE):
        configured = float(cls(**fields).config.l2)  # the configured lambda is a candidate too
        result = tune_ease_lambda(
            val.data, val.data.split, (*EASE_L2_GRID, configured), evaluate, metric=metric
        )
        chosen = {"l2": result.best_l2}
        scores = {str(k): float(v) for k, v in result.scores.items()}
        method = "tune_ease_lambda"
    else:
        return None
    seconds = round(time.perf_counter() - start, 4)
    return Tuning(method, metric, chosen, scores, seconds, val.files)


# --- running ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FoldOutcome:
    """One fit and evaluation of a model."""

    name: str | None
    config: dict[str, Any]
    train: TrainResult
    evaluation: Evaluation

    @property
    def recommend_seconds(self) -> float:
        """Time to produce the protocol's output (recommend, score or predict)."""
        ev = self.evaluation
        return ev.recommend_seconds if isinstance(ev, TopKResult) else ev.score_seconds

    @property
    def n_users(self) -> int:
        ev = self.evaluation
        if isinstance(ev, RatingResult):
            return int(ev.predictions[USER_ID].nunique())
        return ev.n_users

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "fold": self.name,
            "config": self.config,
            "metrics": dict(ev.metrics),
            "ci": ev.to_dict()["ci"],
            "n_users": self.n_users,
            **({"n_rows": ev.n_rows} if isinstance(ev, RatingResult) else {}),
            "fit_seconds": self.train.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "train": self.train.summary(),
            "evaluation": {k: v for k, v in ev.to_dict().items() if k not in ("metrics", "ci")},
        }


@dataclass(frozen=True, eq=False)
class ModelOutcome:
    """A model's benchmark: its folds (one for a plain split) and how it was configured."""

    name: str
    protocol: ProtocolName
    config_source: str
    """``defaults``, ``params`` (``models.<name>``) or ``tuned`` (on validation)."""
    tuning: Tuning | None
    folds: tuple[FoldOutcome, ...]
    mean: dict[str, float]
    std: dict[str, float]

    @property
    def cross_validated(self) -> bool:
        return len(self.folds) > 1 or self.folds[0].name is not None

    @property
    def fit_seconds(self) -> float:
        return round(float(np.mean([f.train.fit_seconds for f in self.folds])), 4)

    @property
    def recommend_seconds(self) -> float:
        return round(float(np.mean([f.recommend_seconds for f in self.folds])), 4)

    @property
    def samples_per_second(self) -> float | None:
        rates = [f.train.samples_per_second for f in self.folds]
        known = [r for r in rates if r is not None]
        return round(float(np.mean(known)), 1) if known else None

    def summary(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        last = self.folds[-1]
        out: dict[str, Any] = {
            "model": self.name,
            "protocol": self.protocol,
            "output": OUTPUT_FILES[self.protocol],
            "config": last.config,
            "config_source": self.config_source,
            "tuning": None if self.tuning is None else self.tuning.to_dict(),
            "metrics": dict(self.mean),
            "fit_seconds": self.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "samples_per_second": self.samples_per_second,
            "n_parameters": last.train.n_parameters,
            "device": last.train.device,
        }
        if self.cross_validated:
            out["std"] = dict(self.std)
            out["folds"] = [f.summary() for f in self.folds]
        else:
            single = last.summary()
            for key in ("ci", "n_users", "n_rows", "train", "evaluation"):
                if key in single:
                    out[key] = single[key]
        return out


def evaluate_split(
    model: Recommender, split: SplitData, protocol: ProtocolName, *, n_boot: int, seed: int
) -> Evaluation:
    """Score a fitted model on a split's test file under ``protocol``."""
    if protocol == "topk":
        return evaluate_topk(
            model,
            split.train,
            split.test,
            TOPK_KS,
            list_length=LIST_LENGTH,
            n_boot=n_boot,
            seed=seed,
        )
    if protocol == "loo":
        assert split.negatives is not None  # check_config
        return evaluate_loo(model, split.test, split.negatives, LOO_KS, n_boot=n_boot, seed=seed)
    return evaluate_rating(
        model, split.train, split.test, clip=split.rating_range(), n_boot=n_boot, seed=seed
    )


def output_frame(evaluation: Evaluation) -> pd.DataFrame:
    """The rows of the protocol's output file (PROTOCOL.md headers, original ids)."""
    if isinstance(evaluation, TopKResult):
        return evaluation.recommendations()
    if isinstance(evaluation, LooResult):
        return evaluation.scores
    return evaluation.predictions


def run_model(
    name: str,
    cls: type[Recommender],
    fields: Mapping[str, Any],
    splits: Sequence[SplitData],
    cfg: BenchmarkConfig,
    out: Path,
    *,
    val: SplitData | None = None,
    log: Log = _quiet,
) -> ModelOutcome:
    """Tune (on ``val``), then fit and evaluate a fresh model per split; write its files."""
    source = "params" if name in cfg.model_params else "defaults"
    tuning = tune_model(cls, fields, val, cfg.protocol) if val is not None else None
    if tuning is not None:
        fields, source = {**fields, **tuning.chosen}, "tuned"
        log(f"{name}: tuned on validation ({tuning.metric}): {tuning.chosen}")
    folds: list[FoldOutcome] = []

    def evaluate(model: Recommender, _: InteractionSplit) -> Evaluation:
        split = splits[len(folds)]
        ev = evaluate_split(model, split, cfg.protocol, n_boot=cfg.n_boot, seed=cfg.seed)
        directory = out / split.name if split.name else out
        io.write_csv(output_frame(ev), directory / OUTPUT_FILES[cfg.protocol])
        if cfg.save_models:
            model.save(directory / MODEL_DIR)
        assert model.train_result is not None  # set by fit
        fold = FoldOutcome(split.name, model.config_dict(), model.train_result, ev)
        if split.name:
            io.write_json(fold.summary(), directory / METRICS_FILE)
        folds.append(fold)
        return ev

    fit_sets = [(data, data.split) for data in (s.fit_data() for s in splits)]
    cv = cross_validate(lambda: cls(**fields), fit_sets, evaluate)
    outcome = ModelOutcome(name, cfg.protocol, source, tuning, tuple(folds), cv.mean, cv.std)
    io.write_json(outcome.summary(), out / METRICS_FILE)
    return outcome


@dataclass(frozen=True, eq=False)
class BenchmarkReport:
    """Every model's outcome plus what is needed to trust and reproduce the numbers."""

    protocol: ProtocolName
    split: dict[str, Any]
    """Role -> file info (one split), or fold -> role -> file info."""
    models: dict[str, ModelOutcome]
    skipped: dict[str, str]
    hardware: dict[str, Any]
    versions: dict[str, str]
    n_items: int
    """Distinct items in train (the topk candidates; first fold)."""
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return {
            "protocol": self.protocol,
            "split": self.split,
            "hardware": self.hardware,
            "versions": self.versions,
            "models": {name: m.summary() for name, m in self.models.items()},
            "skipped": dict(self.skipped),
            "seconds": self.seconds,
        }

    def ranked(self) -> list[ModelOutcome]:
        """Best first by the protocol's primary metric (RMSE: lowest first)."""
        key = MARKDOWN_COLUMNS[self.protocol][0][1]
        sign = 1.0 if self.protocol == "rating" else -1.0
        return sorted(self.models.values(), key=lambda m: sign * m.mean[key])

    def markdown(self) -> str:
        """``results.md``: one table in REFERENCE.md's layout, then tuning and hardware."""
        columns = MARKDOWN_COLUMNS[self.protocol]
        models = self.ranked()
        cv = models[0].cross_validated
        head = ["model", *(label for label, _ in columns)]
        head += ["fit s", "recommend s", "samples/s", "parameters"]
        lines = [f"# Benchmark: protocol `{self.protocol}`", "", self._describe_split(models), ""]
        lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for m in models:
            cells = [m.name]
            for j, (_, key) in enumerate(columns):
                cell = f"{m.mean[key]:.4f}"
                if cv and key in m.std:
                    cell += f" ± {m.std[key]:.4f}"
                elif j == 0 and key in m.folds[0].evaluation.ci:
                    lo, hi = m.folds[0].evaluation.ci[key]
                    cell += f" ({lo:.4f}–{hi:.4f})"
                cells.append(cell)
            rate = m.samples_per_second
            cells += [
                _seconds(m.fit_seconds),
                _seconds(m.recommend_seconds),
                "—" if rate is None else f"{rate:,.0f}",
                f"{m.folds[-1].train.n_parameters:,}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        first = columns[0][0]
        unit = "test rows" if self.protocol == "rating" else "evaluated users"
        lines.append(
            f"{first}: mean ± std (population) over folds."
            if cv
            else f"{first}: mean (95% percentile bootstrap CI over {unit})."
        )
        tuned = [f"{m.name} {m.tuning.chosen}" for m in models if m.tuning is not None]
        if tuned:
            lines.append(f"Tuned on the validation files only: {'; '.join(tuned)}.")
        if self.skipped:
            lines.append(f"Skipped (not importable): {', '.join(sorted(self.skipped))}.")
        devices = sorted({m.folds[-1].train.device for m in models})
        hw = self.hardware
        lines.append(
            f"Hardware: {hw['cpu']} ({hw['nproc']} cores, {hw['memory_gib']} GiB), GPU: "
            f"{', '.join(hw['gpus']) or 'none'}; models ran on {', '.join(devices)}."
        )
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()) + ".")
        return "\n".join(lines) + "\n"

    def _describe_split(self, models: list[ModelOutcome]) -> str:
        fold = models[0].folds[0]
        if models[0].cross_validated:
            names = ", ".join(str(f.name) for f in models[0].folds)
            return f"Cross-validation over {len(models[0].folds)} folds ({names})."
        train, test = self.split["train"], self.split["test"]
        text = (
            f"Split: `{Path(train['path']).name}` ({train['rows']:,} rows) / "
            f"`{Path(test['path']).name}` ({test['rows']:,} rows)"
        )
        if isinstance(fold.evaluation, RatingResult):
            return text + f"; {fold.evaluation.n_rows:,} rows predicted."
        text += f"; {fold.n_users:,} evaluated users"
        return text + (f", {self.n_items:,} train items." if self.protocol == "topk" else ".")


def _seconds(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def run_benchmark(
    cfg: BenchmarkConfig, out: Path, *, log: Log = _quiet, warn: Log = _quiet
) -> BenchmarkReport:
    """Run every model of ``cfg`` and write ``out`` (replaced as a whole when all succeeded).

    Models and their settings are checked, and every file read, before the first fit.

    Raises:
      ConfigError: bad options, an unknown model, a model setting it rejects, or an ``out``
        that exists and is not a benchmark output (it would be replaced).
      DataError: a missing or malformed input file.
    """
    start = time.perf_counter()
    check_config(cfg)
    _check_out(Path(out))
    classes, skipped = resolve_models(cfg.models, warn)
    fields = {n: dict(cfg.model_params.get(n, {})) for n in classes}
    for name, cls in classes.items():
        cls(**fields[name])  # a bad setting fails now, not after an hour of other models
    items, users = read_side_tables(cfg.items, cfg.users)
    splits = [
        load_split(s, file_format=cfg.file_format, items=items, users=users) for s in cfg.splits
    ]
    val = None
    if cfg.val is not None:
        val = load_split(
            cfg.val, file_format=cfg.file_format, items=items, users=users, prefix="val-"
        )
    log(f"benchmark {cfg.protocol}: {', '.join(classes)} on {len(splits)} split(s)")
    outcomes: dict[str, ModelOutcome] = {}
    with io.atomic_dir(Path(out)) as tmp:
        for name, cls in classes.items():
            outcome = run_model(name, cls, fields[name], splits, cfg, tmp / name, val=val, log=log)
            outcomes[name] = outcome
            main = MARKDOWN_COLUMNS[cfg.protocol][0]
            log(
                f"{name}: {main[0]} {outcome.mean[main[1]]:.4f}, fit {outcome.fit_seconds:.3f} s,"
                f" recommend {outcome.recommend_seconds:.3f} s"
            )
        split_info: dict[str, Any] = (
            splits[0].files if splits[0].name is None else {str(s.name): s.files for s in splits}
        )
        if val is not None:
            split_info = {**split_info, "validation": val.files}
        report = BenchmarkReport(
            protocol=cfg.protocol,
            split=split_info,
            models=outcomes,
            skipped=skipped,
            hardware=hardware(),
            versions=library_versions(),
            n_items=int(splits[0].train[ITEM_ID].nunique()),
            seconds=round(time.perf_counter() - start, 3),
        )
        io.write_json(report.to_dict(), tmp / RESULTS_JSON)
        io.write_text(report.markdown(), tmp / RESULTS_MD)
    return report


def _check_out(out: Path) -> None:
    """Refuse to replace a directory that is not a previous benchmark output."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / RESULTS_JSON).is_file())
    ):
        raise ConfigError(
            f"--out {out} exists and is not a benchmark output; it would be replaced",
            where=location(out),
            fix="choose a new or empty directory",
        )


# --- provenance ---------------------------------------------------------------------------------
def library_versions() -> dict[str, str]:
    """Python, recsys, the numeric stack, and the deep-learning libraries this run imported."""
    out = {"python": platform.python_version(), "recsys": __version__}
    for name in ("numpy", "pandas", "scipy", "pyarrow"):
        out[name] = importlib.metadata.version(name)
    for name in ("tensorflow", "keras", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        out["keras_backend"] = str(keras.backend.backend())
    return out
