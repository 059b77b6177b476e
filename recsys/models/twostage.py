"""The served ranking as one ``Recommender``: retrieve M candidates per user by a retrieval
model's vectors (exact or ANN search), then rank them by a ranking model.

::

    model = TwoStage.compose(ranker=ease, retriever=twotower, rerank_top=200)   # fitted parts
    ids, scores = model.recommend(users, k=10)        # what /recommend answers, offline
    model.save("models/served")                       # one artifact: parts + index settings

This is the object the metric gate evaluates, the registry promotes and the bento serves
(``recsys.serving.engine.Engine``), so the answers a user gets are the ranking that was gated.
Scores are the ranker's. Ties go to the lower item index at both stages
(``recsys.models.base.top_k``), so with exact retrieval and M at least the catalogue size the
answer equals the ranker's own full ranking. The ANN indexes are built single-threaded from a
fixed seed: the same vectors give the same index, offline and in every service worker.

An explicit ``candidates`` list restricts both stages to those items (as a filter does): the
full-ranking protocol passes every training item, so what is evaluated is what is served; a
list no longer than M (leave-one-out's 100 sampled items) is ranked whole by the ranker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from recsys.config import RetrievalConfig
from recsys.data import io
from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.models.base import USER_BLOCK, Recommender, TrainResult, with_part_params
from recsys.models.model_config import resolve_config
from recsys.retrieval import ExactIndex, ItemIndex, build_index, recall_at_k
from recsys.schema import id_array

RANKER_DIR: Final = "ranker"
RETRIEVER_DIR: Final = "retriever"
PARTS_FILE: Final = "twostage.json"


@dataclass(frozen=True)
class TwoStageConfig:
    """The two parts (registry names and their settings), M and the retrieval index."""

    ranker: str = "ease"
    retriever: str = "twotower"
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Constructor fields per part, keyed by registry name (``models.<name>``)."""
    rerank_top: int = 200
    """M: candidates retrieved per user and ranked by the ranker."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    def __post_init__(self) -> None:
        if self.rerank_top < 1:
            raise ConfigError(f"twostage.rerank_top must be >= 1, got {self.rerank_top}")
        if "twostage" in (self.ranker, self.retriever):
            raise ConfigError("a two-stage model's parts must be other models")


class TwoStage(Recommender):
    """Retrieval of ``rerank_top`` candidates, then the ranker (see the module docstring)."""

    name = "twostage"
    fit_cost = 5.0  # the retrieval index (its parts' fits are reused)

    @classmethod
    def component_models(cls, fields: Mapping[str, Any]) -> tuple[str, ...]:
        cfg = resolve_config(TwoStageConfig, None, fields, cls.name)
        return tuple(dict.fromkeys((cfg.retriever, cfg.ranker)))

    @classmethod
    def with_component_settings(
        cls, fields: Mapping[str, Any], chosen: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        return with_part_params(fields, cls.component_models(fields), chosen)

    def __init__(self, config: TwoStageConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(TwoStageConfig, config, fields, self.name)
        self.ranker: Recommender | None = None
        self.retriever: Recommender | None = None
        self._index: ItemIndex | None = None
        self._rankable: np.ndarray | None = None

    @classmethod
    def compose(
        cls,
        ranker: Recommender,
        retriever: Recommender,
        *,
        rerank_top: int = TwoStageConfig.rerank_top,
        retrieval: RetrievalConfig | None = None,
    ) -> TwoStage:
        """The two-stage model over two *fitted* models (no training): what the pipeline gates.
        ``retriever`` may be ``ranker`` itself (a two-tower model ranking its own candidates):
        it is then kept and saved once."""
        check_compatible(ranker, retriever)
        config = TwoStageConfig(
            ranker=ranker.name,
            retriever=retriever.name,
            params={retriever.name: retriever.config_dict(), ranker.name: ranker.config_dict()},
            rerank_top=rerank_top,
            retrieval=retrieval or RetrievalConfig(),
        )
        model = cls(config)
        model._adopt(ranker, retriever)
        parts = [ranker] if retriever is ranker else [ranker, retriever]
        results = {p.name: p.train_result for p in parts if p.train_result is not None}
        seconds = [r.fit_seconds for r in results.values()]
        model.train_result = TrainResult(
            model=cls.name,
            # The parts' fits; unknown for parts loaded from disk (saved models keep no timings).
            fit_seconds=None if None in seconds else round(sum(filter(None, seconds)), 4),
            n_parameters=model.n_parameters(),
            seed=ranker.train_result.seed if ranker.train_result else 0,
            device=model.device(),
            extra={"parts": {name: r.summary() for name, r in results.items()}},
        )
        return model

    # --- the parts ------------------------------------------------------------------------
    def parts(self) -> tuple[Recommender, Recommender]:
        """(ranker, retriever), fitted; the same object twice when the ranker retrieves."""
        if self.ranker is None or self.retriever is None:
            raise RecsysError("the twostage model is not trained", fix="call fit() or load()")
        return self.ranker, self.retriever

    @property
    def index(self) -> ItemIndex:
        """The first stage's index over the retriever's item vectors (built on first use)."""
        if self._index is None:
            vectors = self.parts()[1].item_embeddings()
            assert vectors is not None  # check_compatible
            self._index = build_index(vectors, self.config.retrieval)
        return self._index

    @property
    def rankable(self) -> np.ndarray:
        """[n_items] bool: the items the ranker ranks by default (``default_candidates``)."""
        if self._rankable is None:
            self._rankable = rankable_mask(self.parts()[0])
        return self._rankable

    @property
    def scores_cold_items(self) -> bool:  # type: ignore[override]
        return self.ranker is not None and self.ranker.scores_cold_items

    def n_parameters(self) -> int:
        ranker, retriever = self.parts()
        return ranker.n_parameters() + (0 if retriever is ranker else retriever.n_parameters())

    def device(self) -> str:
        return ",".join(sorted({p.device() for p in self.parts()}))

    # --- training -------------------------------------------------------------------------
    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        from recsys.models.fit_cache import fitted

        cfg = self.config
        retriever, reused = fitted(cfg.retriever, cfg.params.get(cfg.retriever, {}), data, split)
        parts = {cfg.retriever: reused}
        ranker = retriever
        if cfg.ranker != cfg.retriever:
            ranker, parts[cfg.ranker] = fitted(
                cfg.ranker, cfg.params.get(cfg.ranker, {}), data, split
            )
        self._adopt(ranker, retriever)
        # recall@M is measured where the model is scored (pipeline.two_stage_report), on the
        # test users: an exact search over the catalogue here would repeat it at fit time.
        return {"extra": {"reused": parts}}

    def _adopt(self, ranker: Recommender, retriever: Recommender) -> None:
        check_compatible(ranker, retriever)
        self.ranker, self.retriever = ranker, retriever
        self.vocab, self.feedback = ranker.vocab, ranker.feedback
        self._seen, self._item_in_train = ranker._seen, ranker._item_in_train
        self._index, self._rankable = None, None

    # --- inference --------------------------------------------------------------------------
    def _recommend(
        self, raw_users: np.ndarray, k: int, exclude_seen: bool, eligible: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two stages (``Recommender.recommend``'s contract): ``eligible``, from
        ``candidates`` and ``allowed``, limits what is retrieved (and so ranked)."""
        ids = self._vocab().item_grid(len(raw_users), k)
        scores = np.full((len(raw_users), k), -np.inf, dtype=np.float32)
        for lo in range(0, len(raw_users), USER_BLOCK):
            hi = min(lo + USER_BLOCK, len(raw_users))
            ids[lo:hi], scores[lo:hi] = self._two_stage(raw_users[lo:hi], k, exclude_seen, eligible)
        return ids, scores

    def _two_stage(
        self, raw_users: np.ndarray, k: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        ranker = self.parts()[0]
        users = ranker.encode_users(raw_users)  # unknown users raise UnknownIdError
        eligible = self.rankable if allowed is None else self.rankable & allowed
        # Every item eligible (a ranker that scores cold items, no filter): no faiss selector,
        # which would cost a bitmap of n_items bits per request and a slower filtered search.
        search_filter = None if eligible.all() else eligible
        queries = self.user_vectors(raw_users)
        exclude = [ranker.seen_item_indices(u) for u in raw_users] if exclude_seen else None
        m = max(self.config.rerank_top, k)
        cand, _ = self.index.search(queries, m, exclude=exclude, allowed=search_filter)
        ids = self._vocab().item_grid(len(raw_users), k)
        scores = np.full((len(raw_users), k), -np.inf, dtype=np.float32)
        rows = [row for row in range(len(users)) if (cand[row] >= 0).any()]
        # The index already left the seen items out of the candidates: the ranking excludes
        # nothing more (slicing the [n_users, n_items] seen matrix per request: ~1 ms at 1e6).
        ranked = ranker.rank_candidates_many(
            users[rows], [cand[row][cand[row] >= 0] for row in rows], k
        )
        item_raw = ranker.item_ids
        for row, (top, top_scores) in zip(rows, ranked, strict=True):
            ids[row, : len(top)], scores[row, : len(top)] = item_raw[top], top_scores
        return ids, scores

    def user_vectors(self, user_ids: np.ndarray | list[int]) -> np.ndarray:
        """[n, d] the retriever's query vectors of raw user ids."""
        retriever: Any = self.parts()[1]
        return np.asarray(retriever.user_embeddings(retriever.encode_users(user_ids)))

    def retrieval_recall(self, user_ids: np.ndarray | list[int], m: int | None = None) -> float:
        """Recall@M of the index against exact search over the same vectors and filters (1.0
        for an exact index): how much the ANN loses before the ranker sees the candidates."""
        m = m or self.config.rerank_top
        raw = id_array(user_ids)
        queries = self.user_vectors(raw)
        ranker = self.parts()[0]
        exclude = [ranker.seen_item_indices(u) for u in raw]
        allowed = None if self.rankable.all() else self.rankable
        got, _ = self.index.search(queries, m, exclude=exclude, allowed=allowed)
        exact = self.index if isinstance(self.index, ExactIndex) else ExactIndex(self.index.vectors)
        want, _ = exact.search(queries, m, exclude=exclude, allowed=allowed)
        return round(recall_at_k(got, want), 6)

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.parts()[0]._scores(user_idx, item_idx)

    def _candidate_scores(self, user_idx: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return self.parts()[0]._candidate_scores(user_idx, cand)

    def item_embeddings(self) -> np.ndarray | None:
        """The retriever's item vectors (what the first stage searches)."""
        return self.parts()[1].item_embeddings()

    # --- persistence ------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        ranker, retriever = self.parts()
        ranker.save(path / RANKER_DIR)
        shared = retriever is ranker
        if not shared:
            retriever.save(path / RETRIEVER_DIR)
        io.write_json({"shared": shared}, path / PARTS_FILE)

    def _load(self, path: Path) -> None:
        shared = bool(io.read_json(io.require_file(path / PARTS_FILE, "two-stage parts"))["shared"])
        ranker = Recommender.load(path / RANKER_DIR)
        retriever = ranker if shared else Recommender.load(path / RETRIEVER_DIR)
        self.ranker, self.retriever = ranker, retriever
        check_compatible(ranker, retriever)


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
            fix="use a two-tower model as the retriever (serving.retriever in params.yaml)",
        )


def rankable_mask(ranker: Recommender) -> np.ndarray:
    """[n_items] bool: the items ``ranker.recommend`` would rank by default."""
    mask = np.zeros(len(ranker.item_ids), dtype=bool)
    mask[ranker.default_candidates()] = True
    return mask


def two_stage_of(model: Recommender) -> TwoStage:
    """``model`` itself when it is a ``TwoStage``; a ``DataError`` naming the fix otherwise."""
    if not isinstance(model, TwoStage):
        raise DataError(
            f"a '{model.name}' model is not a two-stage ranking",
            fix="serve and promote the two-stage model built by `recsys compose`",
        )
    return model


__all__: Sequence[str] = (
    "TwoStage",
    "TwoStageConfig",
    "check_compatible",
    "rankable_mask",
    "two_stage_of",
)
