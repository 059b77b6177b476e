"""Item-embedding retrieval: exact top-k and faiss ANN behind one interface, and the two-stage
recommender (retrieve top-M by the two-tower model, re-rank them by the champion).

::

    index = build_index(retriever.item_embeddings(), RetrievalConfig())   # exact below a size
    idx, sims = index.search(queries, k=200, exclude=[seen_u], allowed=mask)
    ids, scores = two_stage_recommend(ranker, retriever, index, [42], k=10, rerank_top=200)

Scores are inner products (the two-tower model's ``u . v``). ``ExactIndex`` breaks ties by the
lower item index (``recsys.models.base.top_k``), as ``Recommender.recommend`` does, so with
exact retrieval and ``rerank_top`` at least the catalogue size the two-stage answer equals the
ranker's own ``recommend``. The ANN indexes (HNSW, IVF) are built single-threaded from a
fixed seed, so the same embeddings always give the same index and the same answers: the
service and the offline pipeline agree (train/serve parity, RELIABILITY.md item 6).

This module is pure numpy + faiss; it never imports TensorFlow or BentoML.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np

from recsys.config import Storage
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender, top_k

IndexKind = Literal["auto", "exact", "hnsw", "ivf"]
SEARCH_BLOCK = 256
"""Queries scored per block by ``ExactIndex``: bounds memory at 256 x n_items floats."""


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


class ItemIndex(abc.ABC):
    """Maximum inner product search over [n_items, d] float32 item vectors."""

    kind: str

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise DataError(f"item vectors must be a non-empty [n, d] array, got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise DataError("item vectors contain NaN or infinite values")
        self.vectors = vectors

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per query by inner product, best first.

        Args:
          queries: [n, d] float32 query vectors.
          k: results per query; rows with fewer eligible items are padded with -1 / -inf.
          exclude: per query, item indices never returned (e.g. the user's seen items).
          allowed: [n_items] bool, the only items that may be returned (filters).

        Returns:
          ([n, k] int64 item indices, [n, k] float32 scores).
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise DataError(f"query width {q.shape[1]} != index width {self.dim}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if exclude is not None and len(exclude) != len(q):
            raise ValueError("exclude needs one array per query")
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n_items,):
                raise ValueError(f"allowed must be [{self.n_items}] bool")
        return self._search(q, k, exclude, allowed)

    @abc.abstractmethod
    def _search(
        self,
        q: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


class ExactIndex(ItemIndex):
    """Brute-force inner products; ties go to the lower item index."""

    kind = "exact"

    def _search(
        self,
        q: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(q), k), -1, dtype=np.int64)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        for lo in range(0, len(q), SEARCH_BLOCK):
            hi = min(lo + SEARCH_BLOCK, len(q))
            s = q[lo:hi] @ self.vectors.T
            if allowed is not None:
                s[:, ~allowed] = -np.inf
            if exclude is not None:
                for row in range(lo, hi):
                    s[row - lo, np.asarray(exclude[row], dtype=np.int64)] = -np.inf
            top = top_k(s, k)
            top_s = np.take_along_axis(s, top, axis=1)
            valid = np.isfinite(top_s)
            width = top.shape[1]
            ids[lo:hi, :width] = np.where(valid, top, -1)
            scores[lo:hi, :width] = np.where(valid, top_s, -np.inf)
        return ids, scores


class FaissIndex(ItemIndex):
    """faiss HNSW or IVF over inner products, the vectors stored as ``cfg.storage``; filters
    through an ``IDSelectorBitmap``, exclusions by over-fetching and dropping (a user's seen
    items are few)."""

    def __init__(self, vectors: np.ndarray, kind: Literal["hnsw", "ivf"], cfg: RetrievalConfig):
        super().__init__(vectors)
        import faiss as faiss_module

        faiss: Any = faiss_module  # the SWIG module's stubs lack SearchParametersHNSW
        self.kind = kind
        self.storage = cfg.storage
        self._faiss = faiss
        quantizer_type = {
            "float16": faiss.ScalarQuantizer.QT_fp16,
            "int8": faiss.ScalarQuantizer.QT_8bit,
        }.get(cfg.storage)
        ip = faiss.METRIC_INNER_PRODUCT
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # deterministic build: same vectors -> same index
        try:
            if kind == "hnsw":
                index: Any = (
                    faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, ip)
                    if quantizer_type is None
                    else faiss.IndexHNSWSQ(self.dim, quantizer_type, cfg.hnsw_m, ip)
                )
                index.hnsw.efConstruction = cfg.ef_construction
                index.train(self.vectors)  # the quantizer's ranges; a no-op for float32
                index.add(self.vectors)
                self._params: Any = faiss.SearchParametersHNSW
                self._options = {"efSearch": cfg.ef_search}
            else:
                # faiss wants >= 39 training points per list
                nlist = cfg.nlist or min(int(4 * math.sqrt(self.n_items)), self.n_items // 39)
                nlist = max(1, min(nlist, self.n_items))
                coarse = faiss.IndexFlatIP(self.dim)
                index = (
                    faiss.IndexIVFFlat(coarse, self.dim, nlist, ip)
                    if quantizer_type is None
                    else faiss.IndexIVFScalarQuantizer(coarse, self.dim, nlist, quantizer_type, ip)
                )
                index.cp.seed = cfg.seed
                index.train(self.vectors)
                index.add(self.vectors)
                self._params = faiss.SearchParametersIVF
                self._options = {"nprobe": min(cfg.nprobe, nlist)}
        finally:
            faiss.omp_set_num_threads(threads)
        self.index = index

    @property
    def index_bytes(self) -> int:
        """Bytes of the stored vectors (the codes: the part ``storage`` shrinks), without the
        ids, lists or graph around them."""
        hnsw = self.kind == "hnsw"
        codes = self._faiss.downcast_index(self.index.storage) if hnsw else self.index
        return int(codes.code_size) * int(self.index.ntotal)

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the search-time knob of a built index (HNSW ``efSearch``, IVF ``nprobe``)
        without rebuilding it: how ``bench/ann_recall.py`` sweeps the recall/latency trade-off."""
        if self.kind == "hnsw" and ef_search is not None:
            if ef_search < 1:
                raise ConfigError(f"ef_search must be >= 1, got {ef_search}")
            self._options["efSearch"] = int(ef_search)
        if self.kind == "ivf" and nprobe is not None:
            if nprobe < 1:
                raise ConfigError(f"nprobe must be >= 1, got {nprobe}")
            self._options["nprobe"] = min(int(nprobe), int(self.index.nlist))

    def _search(
        self,
        q: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        options: dict[str, Any] = dict(self._options)
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            options["sel"] = self._faiss.IDSelectorBitmap(self.n_items, self._faiss.swig_ptr(bits))
        extra = 0 if exclude is None else max((len(e) for e in exclude), default=0)
        fetch = min(k + extra, self.n_items)
        if self.kind == "hnsw":
            options["efSearch"] = max(options["efSearch"], fetch)
        params = self._params(**options)
        scores, ids = self.index.search(q, fetch, params=params)
        ids = ids.astype(np.int64)
        out_ids = np.full((len(q), k), -1, dtype=np.int64)
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        for row in range(len(q)):
            keep = ids[row] >= 0
            if exclude is not None and len(exclude[row]):
                keep &= ~_contains(np.sort(exclude[row]), ids[row])
            got_ids, got_scores = ids[row][keep][:k], scores[row][keep][:k]
            out_ids[row, : len(got_ids)] = got_ids
            out_scores[row, : len(got_ids)] = got_scores
        return out_ids, out_scores


def _contains(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[len(x)] bool: which of ``x`` are in ``sorted_values`` (non-empty, ascending). A binary
    search: ``np.isin`` sorts both arrays on every call (~0.1 ms per request at 1e6 items)."""
    pos = np.minimum(np.searchsorted(sorted_values, x), len(sorted_values) - 1)
    return sorted_values[pos] == x


def build_index(vectors: np.ndarray, cfg: RetrievalConfig | None = None) -> ItemIndex:
    """The index ``cfg`` asks for over ``vectors`` (exact below ``cfg.exact_below`` items)."""
    cfg = cfg or RetrievalConfig()
    kind = cfg.resolved_kind(len(vectors))
    if kind == "exact":
        return ExactIndex(vectors)
    return FaissIndex(vectors, kind, cfg)


# --- two-stage recommendation ---------------------------------------------------------------------
class EmbeddingModel(Protocol):
    """A retrieval model: the two-tower model (``recsys.models.twotower.TwoTower``)."""

    def item_embeddings(self) -> np.ndarray | None: ...
    def user_embeddings(self, user_idx: np.ndarray) -> np.ndarray: ...
    def encode_users(self, user_ids: np.ndarray | list[int]) -> np.ndarray: ...
    @property
    def item_ids(self) -> np.ndarray: ...


def check_compatible(ranker: Recommender, retriever: Recommender) -> None:
    """The two models must share the item vocabulary (trained on the same processed data):
    retrieval hands item indices to the ranker."""
    if not np.array_equal(ranker.item_ids, retriever.item_ids):
        raise DataError(
            "the ranking and retrieval models have different item catalogues",
            fix="train both on the same processed data (one pipeline run)",
        )
    if not hasattr(retriever, "user_embeddings") or retriever.item_embeddings() is None:
        raise DataError(
            f"the retrieval model '{retriever.name}' has no user/item embeddings",
            fix="use a two-tower model as the retriever",
        )


def rankable_mask(ranker: Recommender) -> np.ndarray:
    """[n_items] bool: the items ``ranker.recommend`` would rank by default."""
    mask = np.zeros(len(ranker.item_ids), dtype=bool)
    mask[ranker.default_candidates()] = True
    return mask


def two_stage_recommend(
    ranker: Recommender,
    retriever: EmbeddingModel,
    index: ItemIndex,
    user_ids: np.ndarray | list[int],
    k: int = 10,
    *,
    rerank_top: int = 200,
    exclude_seen: bool = True,
    allowed: np.ndarray | None = None,
    rankable: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Retrieve ``rerank_top`` candidates per user by the retriever's embeddings, then rank them
    with ``ranker.recommend(..., candidates=...)``: the function the service calls.

    Args:
      ranker: the champion; its item vocabulary is the retriever's (``check_compatible``).
      retriever: gives user query vectors; ``index`` holds its item vectors.
      user_ids: [n] raw user ids known to both models.
      allowed: [n_items] bool filter (genres, ...); None: every item.
      rankable: ``rankable_mask(ranker)`` computed once by the caller (the service's engine),
        so that a request does not rebuild an [n_items] mask; None: computed here.

    Returns:
      ([n, k] raw item ids, [n, k] float32 ranker scores), padded with -1 / -inf.
    """
    raw_users = np.asarray(user_ids, dtype=np.int64).ravel()
    users = ranker.encode_users(raw_users)  # unknown users raise UnknownIdError, as recommend
    eligible = rankable_mask(ranker) if rankable is None else rankable
    if allowed is not None:
        eligible = eligible & allowed
    # Every item eligible (a ranker that scores cold items, no filter): no faiss selector,
    # which would cost a bitmap of n_items bits per request and a slower filtered search.
    search_filter = None if eligible.all() else eligible
    queries = retriever.user_embeddings(retriever.encode_users(raw_users))
    exclude = None
    if exclude_seen:
        exclude = [ranker.seen_item_indices(int(u)) for u in raw_users]
    cand, _ = index.search(queries, max(rerank_top, k), exclude=exclude, allowed=search_filter)
    ids = np.full((len(raw_users), k), -1, dtype=np.int64)
    scores = np.full((len(raw_users), k), -np.inf, dtype=np.float32)
    item_raw = ranker.item_ids
    rows = [row for row in range(len(users)) if (cand[row] >= 0).any()]
    # The index already left the seen items out of the candidates: re-ranking excludes nothing
    # more (``recommend(exclude_seen=True)`` would slice the [n_users, n_items] seen matrix per
    # request: ~1 ms at 1e6 items).
    ranked = ranker.rank_candidates_many(
        users[rows], [cand[row][cand[row] >= 0] for row in rows], k
    )
    for row, (top, top_scores) in zip(rows, ranked, strict=True):
        ids[row, : len(top)], scores[row, : len(top)] = item_raw[top], top_scores
    return ids, scores


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` (item indices, -1 padding ignored) found in the
    same row of ``approx``: ANN recall@k against exact search."""
    hits, total = 0, 0
    for a, e in zip(approx, exact, strict=True):
        e = e[e >= 0]
        hits += int(np.isin(e, a[a >= 0]).sum())
        total += len(e)
    return hits / total if total else 1.0
