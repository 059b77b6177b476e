"""Item-embedding retrieval: exact top-k and faiss ANN behind one interface (the first stage of
``recsys.models.twostage.TwoStage``, which retrieves top-M and re-ranks them).

::

    index = build_index(retriever.item_embeddings(), RetrievalConfig())   # exact below a size
    idx, sims = index.search(queries, k=200, exclude=[seen_u], allowed=mask)

Scores are inner products (the two-tower model's ``u . v``). ``ExactIndex`` breaks ties by the
lower item index (``recsys.models.base.top_k``), as ``Recommender.recommend`` does, so with
exact retrieval and M at least the catalogue size the two-stage answer equals the ranker's own
``recommend``. The ANN indexes (HNSW, IVF) are built single-threaded from a
fixed seed, so the same embeddings always give the same index and the same answers: the
service and the offline pipeline agree (train/serve parity, RELIABILITY.md item 6).

This module is pure numpy + faiss; it never imports TensorFlow or BentoML.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from recsys.config import RetrievalConfig
from recsys.errors import ConfigError, DataError
from recsys.models.base import top_k

SEARCH_BLOCK = 256
"""Queries scored per block by ``ExactIndex``: bounds memory at 256 x n_items floats."""

Exclusions = Sequence[np.ndarray] | None
"""Per query, the item indices never returned."""
Mask = np.ndarray | None
"""[n_items] bool, the only items that may be returned."""
Hits = tuple[np.ndarray, np.ndarray]
"""([n, k] int64 item indices, [n, k] float32 scores), best first, padded with -1 / -inf."""


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
    def _search(self, q: np.ndarray, k: int, exclude: Exclusions, allowed: Mask) -> Hits: ...


class ExactIndex(ItemIndex):
    """Brute-force inner products; ties go to the lower item index."""

    kind = "exact"

    def _search(self, q: np.ndarray, k: int, exclude: Exclusions, allowed: Mask) -> Hits:
        ids, scores = _padded(len(q), k)
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

    def _search(self, q: np.ndarray, k: int, exclude: Exclusions, allowed: Mask) -> Hits:
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
        out_ids, out_scores = _padded(len(q), k)
        for row in range(len(q)):
            keep = ids[row] >= 0
            if exclude is not None and len(exclude[row]):
                keep &= ~_contains(np.sort(exclude[row]), ids[row])
            got_ids, got_scores = ids[row][keep][:k], scores[row][keep][:k]
            out_ids[row, : len(got_ids)] = got_ids
            out_scores[row, : len(got_ids)] = got_scores
        return out_ids, out_scores


def _padded(n: int, k: int) -> Hits:
    """Empty results for ``n`` queries: ids -1 and scores -inf, which rows with fewer than ``k``
    eligible items keep in their tail."""
    return np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32)


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


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` (item indices, -1 padding ignored) found in the
    same row of ``approx``: ANN recall@k against exact search."""
    hits, total = 0, 0
    for a, e in zip(approx, exact, strict=True):
        e = e[e >= 0]
        hits += int(np.isin(e, a[a >= 0]).sum())
        total += len(e)
    return hits / total if total else 1.0
