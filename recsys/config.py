"""Typed, frozen configuration per stage, read from ``params.yaml``.

``params.yaml`` is the single source of record for tunables; the dataclass defaults below only
make the library usable without it (tests, notebooks). Unknown keys, wrong types and bad values
fail with a ``ConfigError`` that names the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from recsys.errors import ConfigError

SourceName = Literal["synthetic", "movielens", "csv"]
Storage = Literal["float32", "float16", "int8"]
"""How an ANN index stores item vectors (``RetrievalConfig.storage``)."""
IndexKind = Literal["auto", "exact", "hnsw", "ivf"]
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
    Unmapped canonical names are looked up under their own name."""
    sep: str = ","
    encoding: str = "utf-8"
    header: bool = True
    implicit: bool = False
    """True for click or play logs: ``rating`` holds a count, or 1 when the file has none."""
    rating_scale: tuple[float, float] | None = (1.0, 5.0)
    """Inclusive range of explicit ratings (validated); ignored for implicit logs."""
    timestamp_unit: Literal["s", "ms", "datetime"] = "s"
    items_path: str | None = None
    users_path: str | None = None
    item_columns: dict[str, str] = field(default_factory=dict)
    user_columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    source: SourceName = "synthetic"
    path: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    csv: CsvConfig = field(default_factory=CsvConfig)


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
                raise ConfigError(f"'{_key(where, str(name))}' must be a mapping of model fields")
            families[str(name)] = {str(k): v for k, v in fields.items()}
        return cls(families=families)


@dataclass(frozen=True)
class RetrievalConfig:
    """How candidates are retrieved (the ``serving`` settings baked into a bento).

    The defaults keep exact search up to 100k items (one [1, d] x [d, n] product: ~2 ms at
    100k x 128 on one core) and IVF (vectors stored as float16) above it.
    ``bench/ann_recall.py`` measured, on a 1e6-item clustered catalogue (d=64, 2-core EPYC):
    IVF with 4000 lists and nprobe=32 recall@10 0.997 against exact search (nprobe=16: 0.984),
    p50 0.16-0.19 ms per query, built in 76 s single-threaded (~5 min on a loaded host); HNSW
    with M=32, efConstruction=80 only 0.70 at efSearch=128 and 0.85 at 1024, built in ~17 min
    (loaded host). HNSW stays available (``ann="hnsw"``).
    """

    kind: IndexKind = "auto"
    """``auto``: exact below ``exact_below`` items, else ``ann``."""
    exact_below: int = 100_000
    ann: Literal["hnsw", "ivf"] = "ivf"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None
    """IVF lists; None: 4 sqrt(n_items) (at most n_items / 39)."""
    nprobe: int = 32
    storage: Storage = "float16"
    """How the ANN index stores the item vectors: ``float32`` (IVF-Flat, HNSW-Flat),
    ``float16`` or ``int8`` (faiss scalar quantizers: IVF-SQ, HNSW-SQ; int8 with a per-dimension
    range learnt from the vectors). The two-stage service re-scores the retrieved candidates
    with the ranker's own float32 weights, so storage changes which candidates are found, not
    their final scores. ``bench/ann_recall.py --storage`` measured, 1e6 x 64 items, IVF nprobe
    32: vectors 244 / 122 / 61 MiB, p50 0.19 / 0.16 / 0.16 ms per query, recall@10 0.997 /
    0.997 / 0.973, the exact top 10 among the top 200 in 99.75 % for all three;
    ``bench/quantization.py``: ml100k-u1 NDCG@10 unchanged after re-scoring. Exact search
    (catalogues below ``exact_below``) always uses the float32 vectors."""
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "exact", "hnsw", "ivf"):
            raise ConfigError(f"retrieval.kind must be auto|exact|hnsw|ivf, got {self.kind!r}")
        if self.ann not in ("hnsw", "ivf"):
            raise ConfigError(f"retrieval.ann must be hnsw|ivf, got {self.ann!r}")
        for name in ("exact_below", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"retrieval.{name} must be an integer >= 1, got {value!r}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"retrieval.nlist must be >= 1, got {self.nlist}")
        if self.storage not in get_args(Storage):
            raise ConfigError(
                f"retrieval.storage must be {'|'.join(get_args(Storage))}, got {self.storage!r}"
            )

    def resolved_kind(self, n_items: int) -> Literal["exact", "hnsw", "ivf"]:
        if self.kind == "auto":
            return "exact" if n_items < self.exact_below else self.ann
        return self.kind


@dataclass(frozen=True)
class ServingConfig:
    """Serving settings, baked into a bento as JSON (``package.build_bento(serving=...)``)."""

    retriever: str = "twotower"
    """The candidate family whose user and item vectors retrieve the M candidates (it must
    have embeddings: ``twotower``); the gated two-stage model is built from it and the best
    candidate (``recsys.promotion``)."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank_top: int = 200
    """M: candidates retrieved per user and re-ranked by the champion."""

    explain_history: int = 3
    """History items reported per recommended item by ``explain``."""
    workers: int = 1
    """Worker processes of the served bento. Each loads the models and builds its own index
    (memory and start-up time grow with it); one worker runs Python on one core at a time
    (the GIL). The workers share one listening socket and the first to wake accepts a burst
    of new connections, so on one host a second worker adds throughput only when clients'
    connections happen to spread (docs/serving.md, "Workers")."""

    access_log: bool = False
    """BentoML's per-request access log line. Off by default: on a loaded 2-core host the
    line per request cost 30-65 % of the throughput at 8 clients (bench/serving.py A/B, ML-100K);
    ``/metrics`` counts requests and latencies either way."""

    max_batch: int = 64
    """Most concurrent ``/recommend`` requests answered by one model call (1: no batching).
    Batches form only from requests already waiting, so a lone request is never delayed."""

    trace_requests: bool = False
    """OpenTelemetry spans for the data-plane endpoints. BentoML 1.4 creates a span per request
    even with no exporter configured; on our 2-core host a no-op endpoint served 1,860 req/s
    without it and 1,100 with it (32 clients, one worker), so the data-plane
    routes are excluded from tracing unless this is on (``/livez``, ``/readyz``, ``/metrics``
    keep BentoML's defaults)."""

    latency_budget_s: float = 1.0
    """Seconds a data-plane request may wait for its answer to start; past it, 503 with
    ``Retry-After`` and ``recsys_latency_budget_exceeded_total`` (RELIABILITY.md item 22;
    ``recsys.serving.limits.LatencyBudget``). At 1e6 items and 48 saturating clients the p99
    is 32-45 ms, so 1 s sheds only requests stuck behind a real overload. BentoML's own 10 s
    ``traffic.timeout`` (504) stays as the outer bound."""

    fast_path: bool = True
    """``/recommend`` requests whose body validates are answered by
    ``recsys.serving.fastpath.JSONFastPath`` instead of BentoML's per-API machinery (router,
    context, serde, dispatch); anything else, errors included, still goes through BentoML. Same
    answers (tested); at the 1e6 catalogue, 32 clients: 2,043-2,371 req/s and p99 19.7-24.5 ms
    against 1,436-1,705 and 24.0-31.2 ms without (docs/benchmarks.md, "Fast path")."""

    def __post_init__(self) -> None:
        for name in ("access_log", "trace_requests", "fast_path"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"serving.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in ("rerank_top", "explain_history", "workers", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serving.{name} must be an integer >= 1, got {value!r}")
        budget = self.latency_budget_s
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
            raise ConfigError(f"serving.latency_budget_s must be a number > 0, got {budget!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ServingConfig:
        """Strict: unknown keys, wrong types and bad values raise ``ConfigError``."""
        return from_dict(cls, raw, "serving")


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)


T = TypeVar("T")


SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params))
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


def from_dict(cls: type[T], raw: object, where: str) -> T:
    """Build dataclass ``cls`` from a mapping; ``where`` names the key path in errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        scope = f"'{where}'" if where else "the top level"
        raise ConfigError(
            f"unknown key(s) {unknown} in {scope}", fix=f"valid keys are {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, _key(where, k)) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid '{where}': {exc}") from exc


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that coerces and checks the changed values like ``from_dict``."""
    hints = typing.get_type_hints(type(obj))
    checked = {k: _coerce(hints[k], v, k) if k in hints else v for k, v in changes.items()}
    return dataclasses.replace(obj, **checked)  # type: ignore[type-var]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, type) and hasattr(tp, "from_raw"):  # sections with free-form keys
        return tp.from_raw(value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(exc.what)
        raise ConfigError(f"'{where}' = {value!r} does not fit {tp}", fix="; ".join(errors))
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"'{where}' = {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        value_type = (get_args(tp) or (str, str))[1]
        if value_type is not str:  # typed values (numbers, nested sections) are checked too
            return {str(k): _coerce(value_type, v, _key(where, str(k))) for k, v in value.items()}
        return {str(k): str(v) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        return tuple(_coerce(get_args(tp)[0], v, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{where}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{where}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{where}' must be a string, got {value!r}")
        return value
    return value
