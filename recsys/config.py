"""Typed, frozen configuration per stage, read from ``params.yaml``.

``params.yaml`` is the single source of record for tunables; the dataclass defaults below only
make the library usable without it (tests, notebooks). Unknown keys, wrong types and bad values
fail with a ``ConfigError`` that names the key, so a typo never silently falls back to a default.

The ``serving`` section lives in ``recsys.config_serving``, ``container`` and ``monitoring`` in
``recsys.config_ops``, and the strict mapping -> dataclass machinery (``from_dict``,
``replace``) in ``recsys.config_loader``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recsys.config_loader import from_dict, key_path, replace
from recsys.config_ops import (
    ContainerConfig,
    MonitoringConfig,
    UpdateConfig,
)
from recsys.config_serving import IndexKind, RetrievalConfig, ServingConfig, Storage
from recsys.errors import ConfigError

__all__ = [
    "DEFAULT_CANDIDATES",
    "SECTIONS",
    "CsvConfig",
    "DataConfig",
    "DriftConfig",
    "GateConfig",
    "IndexKind",
    "ModelsConfig",
    "Params",
    "PreprocessConfig",
    "RetrievalConfig",
    "ServingConfig",
    "SliceGate",
    "SourceName",
    "SplitConfig",
    "SplitMethod",
    "Storage",
    "SyntheticConfig",
    "TuningConfig",
    "ValidationConfig",
    "from_dict",
    "load_params",
    "replace",
]

SourceName = Literal["synthetic", "movielens", "csv"]
SplitMethod = Literal[
    "random_holdout", "temporal_holdout", "global_temporal", "leave_one_out", "predefined", "kfold"
]


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded default data set (see ``recsys.data.synthetic`` for the latent structure)."""

    n_interactions: int = 100_000
    n_users: int | None = None
    """None: derived from ``n_interactions`` (about 50 interactions per user)."""
    n_items: int | None = None
    """None: derived from ``n_interactions`` (about 100 interactions per item)."""
    n_factors: int = 8
    n_genres: int = 12
    popularity_exponent: float = 1.0
    """Zipf exponent of the item-popularity long tail."""
    noise: float = 0.5
    start: str = "2015-01-01"
    end: str = "2020-01-01"
    seed: int = 20261128


@dataclass(frozen=True)
class CsvConfig:
    """A generic interaction log (CSV, TSV or Parquet) mapped onto the canonical columns."""

    columns: dict[str, str] = field(default_factory=dict)
    """Canonical name -> name in the file, e.g. ``{user_id: userId, item_id: movieId}``.
    Unmapped canonical names are looked up under their own name. ``weight`` (instead of
    ``rating``) names an implicit strength (plays, clicks) and makes the log implicit."""
    sep: str = ","
    encoding: str = "utf-8"
    header: bool = True
    implicit: bool = False
    """True for click or play logs: ``rating`` holds a count, or 1 when the file has none."""
    rating_scale: tuple[float, float] | None = (1.0, 5.0)
    """Inclusive range of explicit ratings (validated); ignored for implicit logs."""
    timestamp_unit: Literal["s", "ms", "datetime", "none"] = "s"
    """``none``: the log has no timestamp; every row gets 0 (use a non-temporal split)."""
    items_path: str | None = None
    users_path: str | None = None
    item_columns: dict[str, str] = field(default_factory=dict)
    user_columns: dict[str, str] = field(default_factory=dict)
    item_text: tuple[str, ...] = ()
    """Item-table columns of free text, appended to the items' ``text``."""
    item_categorical: tuple[str, ...] = ()
    """Item-table columns of categories, added to ``genres`` as ``column=value``."""
    item_numeric: tuple[str, ...] = ()
    """Item-table columns kept as float64 attributes."""


@dataclass(frozen=True)
class DataConfig:
    source: SourceName = "synthetic"
    path: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    csv: CsvConfig = field(default_factory=CsvConfig)
    format: str | None = None
    """``csv`` source only: None reads ``data.path`` with the ``data.csv`` mapping; ``auto``
    or a format name (``ml-100k``, ``ml-dat``, ``ml-csv``, ``playcount``, ``csv``, ``parquet``)
    reads it with ``recsys.data.sources.formats`` (side tables detected)."""
    batches: str = "data/raw/batches"
    """Batches of new interactions accepted by ``recsys update``, appended to the source in
    file-name order (``recsys.data.sources.load_source``), so a full retrain has them too."""


@dataclass(frozen=True)
class DriftConfig:
    """Tolerances against the previous accepted version; exceeding one is a warning only."""

    max_rating_tvd: float = 0.10
    """Total-variation distance between rating histograms."""
    max_popularity_tvd: float = 0.25
    """Total-variation distance between item-popularity distributions (shared items)."""


@dataclass(frozen=True)
class ValidationConfig:
    rating_min: float | None = None
    """None: the source's own scale (1-5 for MovieLens), or >= 0 for implicit logs."""
    rating_max: float | None = None
    min_timestamp: str = "1995-01-01"
    max_future_seconds: int = 0
    """Allowed clock skew: timestamps up to this many seconds past 'now' still pass."""
    min_interactions_per_user: int = 1
    min_interactions_per_item: int = 1
    drift: DriftConfig = field(default_factory=DriftConfig)
    quarantine: bool = False
    """True: rows failing a row-level expectation are written to ``quarantine.parquet`` and
    the remaining rows are accepted. False: any failure blocks. Rows are never dropped silently."""
    sample_rows: int = 5
    """How many offending rows each failed expectation shows in the report."""


@dataclass(frozen=True)
class SplitConfig:
    method: SplitMethod = "temporal_holdout"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    """Share of each user's remaining training rows held out for tuning (0: none)."""
    n_negatives: int = 99
    """Leave-one-out: sampled never-interacted items per test (and validation) user.
    For leave_one_out, val_fraction > 0 only switches the one validation row per user on."""
    n_folds: int = 5
    test_file: str | None = None
    """Predefined split: a file in u.data format whose (user, item) pairs are the test rows
    (e.g. MovieLens ``u1.test``); every other interaction is training data."""
    seed: int = 20261128


@dataclass(frozen=True)
class PreprocessConfig:
    implicit_threshold: float | None = None
    """Ratings >= this become positive interactions (rating 1); None keeps explicit ratings."""
    min_user_interactions: int = 5
    """k-core: users with fewer interactions are removed, repeated with the item rule to a
    fixed point."""
    min_item_interactions: int = 5
    max_title_tokens: int = 16
    max_vocab_tokens: int = 20_000
    """Token-id space including the reserved ids 0 (padding) and 1 (out of vocabulary)."""
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass(frozen=True)
class SliceGate:
    """One slice (e.g. cold users, tail items) the challenger must not regress on."""

    metric: str = "ndcg@10"
    max_regression: float = 0.0
    """Largest allowed drop against the champion's value on this slice (absolute)."""
    min_value: float | None = None
    """Optional absolute floor on the slice, applied with or without a champion."""


@dataclass(frozen=True)
class GateConfig:
    """The promotion gate (``recsys.gate.decide``); it fails closed: no thresholds, no promotion.

    Defaults fit the embedded synthetic data set; the values of record live in ``params.yaml``.
    """

    primary_metric: str = "ndcg@10"
    min_metrics: dict[str, float] = field(
        default_factory=lambda: {"ndcg@10": 0.12, "recall@10": 0.10}
    )
    """Absolute floors, always applied (higher is better). The synthetic default data's
    most-popular baseline scores ndcg@10 0.117: a model must at least beat popularity."""
    max_metrics: dict[str, float] = field(default_factory=dict)
    """Absolute ceilings for lower-is-better metrics, e.g. ``{"rmse": 0.95}``."""
    min_gain: float = 0.002
    """Margin by which the challenger must beat the champion on the primary metric."""
    alpha: float = 0.05
    """The paired-bootstrap (1 - alpha) CI of the gain must lie above 0."""
    n_bootstrap: int = 1000
    seed: int = 0
    max_latency_p99_ms: float | None = 100.0
    """Single-request ``recommend`` p99 latency budget; None: no budget."""
    max_model_bytes: int | None = 200_000_000
    """On-disk size budget of the saved model directory; None: no budget."""
    max_two_stage_loss: float | None = 0.01
    """The served two-stage ranking (ANN retrieval of M candidates, then the ranker) may score
    at most this much below the ranker's own full-catalogue ranking on the primary metric
    (absolute); None: no budget. What the service answers is what the gate measured."""
    slices: dict[str, SliceGate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be >= 1, got {self.n_bootstrap}")


DEFAULT_CANDIDATES: tuple[str, ...] = ("ease", "neumf", "twotower")
"""The default pipeline's candidates: a strong classic baseline, the deep CF model, and the
two-tower retrieval model that serving's nearest-neighbour index needs."""


@dataclass(frozen=True)
class ModelsConfig:
    """The candidate model families of the pipeline, in order, with each one's settings.

    In ``params.yaml`` the ``models`` section maps a registered family name
    (``recsys.models.registry``) to that model's constructor fields; every family listed is a
    candidate that the pipeline trains and evaluates (the same format ``recsys benchmark
    --params`` reads). Each model checks its own fields strictly when it is constructed, so a
    typo fails there; family names are checked against the registry by ``recsys.pipeline``.
    """

    families: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {name: {} for name in DEFAULT_CANDIDATES}
    )

    @property
    def candidates(self) -> tuple[str, ...]:
        return tuple(self.families)

    def settings(self, family: str) -> dict[str, Any]:
        """Constructor fields of ``family`` (a copy); KeyError when it is not a candidate."""
        return dict(self.families[family])

    @classmethod
    def from_raw(cls, raw: object, where: str) -> ModelsConfig:
        if raw is None:
            return cls()
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(
                f"'{where}' must map model family names to their settings, got {raw!r}",
                fix="e.g. models: {ease: {l2: 500.0}, neumf: {epochs: 5}}",
            )
        families: dict[str, dict[str, Any]] = {}
        for name, fields in raw.items():
            if fields is None:
                fields = {}
            if not isinstance(fields, dict):
                raise ConfigError(
                    f"'{key_path(where, str(name))}' must be a mapping of model fields"
                )
            families[str(name)] = {str(k): v for k, v in fields.items()}
        return cls(families=families)


@dataclass(frozen=True)
class TuningConfig:
    """``recsys tune`` on the processed validation split (``recsys.tuning``): opt-in, so the
    default run stays fast; with ``enabled`` the candidates train with the tuned settings."""

    enabled: bool = False
    trials: int = 20
    """Trials per candidate (a resumed study counts those already run)."""
    timeout_s: float = 300.0
    """Wall seconds per candidate for one run."""
    pruner: Literal["median", "hyperband", "none"] = "median"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.pruner not in ("median", "hyperband", "none"):
            raise ValueError(f"pruner must be median, hyperband or none, got {self.pruner!r}")


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)


OPTIONAL_SECTIONS: tuple[str, ...] = ("container", "monitoring", "update")
"""Sections added after parameter files were in use: left out, they take the defaults."""
SECTIONS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Params) if f.name not in OPTIONAL_SECTIONS
)
"""The sections of a complete parameter file, one per stage, in pipeline order."""


def load_params(path: Path | str, *, partial: bool = False) -> Params:
    """Read ``params.yaml`` strictly: a missing section, an unknown key, a wrong type or a bad
    value raises a ``ConfigError`` naming the file (``where``), the key path, what was found and
    what is allowed.

    ``partial``: sections may be left out (they take the library defaults): for files that
    set one stage only, such as ``recsys benchmark --params`` model settings.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file not found: {path}", fix="pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", fix="fix the YAML syntax") from exc
    if not isinstance(raw, dict):
        raise ConfigError("the file must hold a mapping of stage sections", where=str(path))
    try:
        params = from_dict(Params, raw, "")
    except ConfigError as exc:
        raise ConfigError(exc.what, where=str(path), fix=exc.fix) from None
    missing = [name for name in SECTIONS if name not in raw]
    if missing and not partial:
        raise ConfigError(
            f"missing section(s) {missing}; a parameter file has the sections {list(SECTIONS)}",
            where=str(path),
            fix="add them (the repository's params.yaml has every section with its defaults)",
        )
    return params
