"""``recsys benchmark``'s options: the protocol constants, ``BenchmarkConfig`` and its checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, get_args

from recsys.config import CsvConfig, PreprocessConfig, SplitConfig
from recsys.config_loader import from_dict
from recsys.data import io
from recsys.data.sources.formats import FORMAT_CHOICES, resolve_format
from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.tuning.study import TuneSettings
from recsys.evaluation.harness import (
    ProtocolName,
)

FileFormat = str
"""A format name of ``recsys.data.sources.formats.FORMAT_CHOICES`` (``ml-100k``, ``ml-dat``,
``ml-csv``, ``playcount``, ``csv``, ``parquet``; ``uidata`` = ``ml-100k``)."""
Log = Callable[[str], None]

PROTOCOLS: Final = get_args(ProtocolName)
FILE_FORMATS: Final = FORMAT_CHOICES
OUTPUT_FILES: Final[Mapping[str, str]] = {
    "topk": "recommendations.csv",
    "loo": "scores.csv",
    "rating": "predictions.csv",
}
METRICS_FILE: Final = "metrics.json"
RESULTS_JSON: Final = "results.json"
RESULTS_MD: Final = "results.md"
STUDY_DB: Final = "study.db"
"""The Optuna studies of a tuned benchmark (``--tune-trials``), kept beside its results."""
MODEL_DIR: Final = "model"
LIST_LENGTH: Final = 50
"""Length of each user's list in ``recommendations.csv`` (PROTOCOL.md)."""
TOPK_KS: Final = (10, 20)
LOO_KS: Final = (10,)
TUNE_METRIC: Final[Mapping[str, str]] = {"topk": "ndcg@10", "loo": "ndcg@10", "rating": "neg_rmse"}
"""What tuning maximises on the validation files (``neg_rmse`` = -RMSE)."""
EASE_L2_GRID: Final = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0)
"""EASE lambdas tried on validation (plus the configured one); ml100k-u1 picks 500."""
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


def quiet(_: str) -> None:
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
    """Item table (content for content-aware models), any format of ``read_items_file``."""
    users: Path | None = None
    """User table (user attributes), any format of ``read_users_file``."""
    file_format: FileFormat | None = None
    """Format of the split files; None: detected per file (``detect_format``)."""
    items_format: FileFormat | None = None
    users_format: FileFormat | None = None
    """Formats of ``items`` / ``users``; None: detected."""
    csv: CsvConfig | None = None
    """Column mapping of ``csv``/``parquet`` files (``data.csv`` of ``--params``); None: the
    header names the canonical columns."""
    save_models: bool = False
    n_boot: int = 1000
    seed: int = 0
    """Bootstrap seed of the CIs."""
    jobs: int | None = 1
    """Worker processes the models are spread over (``recsys.benchmark.schedule``); None: one
    per core. 1 runs every model in the calling process."""
    tune: TuneSettings | None = None
    """With ``val``: an Optuna study per model that declares a search space (``recsys tune``'s,
    within this budget) chooses its settings on the validation files; None: the models' own
    ``tune`` hooks and EASE's lambda grid only."""


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


def load_data_csv(path: Path | None) -> CsvConfig | None:
    """The ``data.csv`` section of a parameter file (the column mapping), or None without one."""
    if path is None:
        return None
    raw = io.read_yaml(path) or {}
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or data.get("csv") is None:
        return None
    return from_dict(CsvConfig, data["csv"], "data.csv")


def check_config(cfg: BenchmarkConfig) -> None:
    """``ConfigError`` for option combinations the protocol cannot honour."""
    for name in (cfg.file_format, cfg.items_format, cfg.users_format):
        resolve_format(name)
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{cfg.protocol}'", fix=f"use one of {PROTOCOLS}")
    if not cfg.splits:
        raise ConfigError("no split to benchmark", fix="pass --train/--test or --folds")
    if cfg.tune is not None and cfg.val is None:
        raise ConfigError(
            "tuning (--tune-trials / --tune-timeout) needs the validation files",
            fix="pass --val-train and --val-test (tuning never reads the test file)",
        )
    if cfg.jobs is not None and cfg.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1 or 'auto', got {cfg.jobs}")
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
