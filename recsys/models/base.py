"""The one ``Recommender`` interface used by evaluation, the gate and serving alike.

A model implements three hooks over contiguous indices:

- ``_fit(data, split) -> dict`` learns from ``split.train`` (and may early-stop on
  ``split.val``); it returns training facts (epochs, history, ...) for ``TrainResult``;
- ``_scores(user_idx, item_idx) -> [n_users, n_items] float32`` scores a block of users
  against a block of items (the dense block lets every model rank with one matrix product);
- ``_save(path)`` / ``_load(path)`` for its own parameters.

Everything else is shared here: raw id <-> index mapping through the ``Vocabulary``, excluding
the items a user saw in training, candidate restriction, batched top-k with deterministic
tie-breaking (``ranking.top_k``), pair scoring, item-item similarity, and the on-disk layout
(``persistence``). Raw ids go in and come out of every public method; indices never leak.

The module stays one file at a little above 400 lines on purpose: ``Recommender`` is the one
contract every model, the evaluation, the gate and the service rely on, and its public methods
are read together; the array helpers already live in ``ranking`` and the disk layout in
``persistence``.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.preprocess import InteractionSplit, Processed, Vocabulary
from recsys.errors import DataError, RecsysError
from recsys.models.model_config import resolve_config, to_jsonable
from recsys.models.ranking import blocks, interaction_matrix, item_similarities, top_items, top_k
from recsys.schema import id_array
from recsys.timings import split_timings

if TYPE_CHECKING:
    from recsys.models.fold_in import Growth

__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "USER_BLOCK",
    "Ids",
    "RawId",
    "Recommender",
    "TrainResult",
    "UnknownIdError",
    "interaction_matrix",
    "resolve_config",
    "to_jsonable",
    "top_k",
]

T = TypeVar("T")
RawId = int | str
"""One raw user or item id: an integer, or the original text of a string id."""
Ids = np.ndarray | Sequence[int] | Sequence[str] | Sequence[RawId]
"""Raw ids of one kind (``recsys.schema.INT_IDS`` / ``STR_IDS``)."""

FORMAT_VERSION = 1
META_FILE = "recommender.json"
USER_BLOCK = 1024
"""Users scored per block in ``recommend``: bounds memory at USER_BLOCK x n_items floats."""


class UnknownIdError(RecsysError):
    """Ids that the model's vocabulary does not contain."""


@dataclass(frozen=True)
class TrainResult:
    """What a ``fit`` did: the facts the benchmark, the gate and the Dagster metadata show."""

    model: str
    fit_seconds: float | None
    """Wall-clock seconds of ``fit``; None once saved and loaded (a saved model keeps no
    timings: ``recsys.timings.TIMING_KEYS``)."""
    n_parameters: int
    seed: int
    device: str = "cpu"
    epochs: int = 0
    best_epoch: int | None = None
    samples_per_second: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    """Per-epoch curves, e.g. ``{"loss": [...], "val_ndcg@10": [...]}``."""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the curves (those go to their own plot/table)."""
        out = dataclasses.asdict(self)
        out.pop("history")
        return out

    def facts(self) -> dict[str, Any]:
        """JSON-ready, curves included, timings left out: the same for two fits with the
        same seed on the same data (what ``save`` writes); ``timings()`` has the rest."""
        return split_timings(dataclasses.asdict(self))[0]

    def timings(self) -> dict[str, Any]:
        """What this fit measured, nested as in ``summary()``: ``fit_seconds``,
        ``samples_per_second``, ``extra``'s epoch and validation seconds."""
        return split_timings(dataclasses.asdict(self))[1]


class Recommender(abc.ABC):
    """Top-k recommendation over a fixed item catalogue (the preprocessing ``Vocabulary``).

    Subclasses set ``name`` and ``config`` and implement ``_fit``, ``_scores``, ``_save`` and
    ``_load``; they must be constructible as ``cls(**config_dict())``.
    """

    name: ClassVar[str]
    config: Any
    """The model's frozen config dataclass (its constructor's fields)."""
    scores_cold_items: ClassVar[bool] = False
    """True when the model can score items never seen in training (content features)."""
    requires: ClassVar[frozenset[str]] = frozenset()
    """What the data must hold for the model to learn anything: ``item_content`` (item text,
    genres or other item features), ``ratings`` (explicit ratings, not counts or clicks).
    ``recsys.models.requirements.skip_reason`` checks it; the benchmark and the pipeline skip,
    with that reason, a model whose data lacks it instead of training it on nothing."""
    task: ClassVar[str] = "ranking"
    """``ranking``: its scores order items by relevance (protocols ``topk`` and ``loo``, the
    pipeline); ``rating``: it predicts explicit ratings (protocol ``rating``), and ranking by
    predicted rating is not what the ranking protocols measure, so a rating model is skipped,
    with the reason, under ``topk`` and ``loo`` and in the pipeline
    (``requirements.skip_reason``)."""

    fit_cost: ClassVar[float] = 1.0
    """Rough seconds of a fit with its validation tuning on ~100k interactions on 2 CPU cores
    (docs/benchmarks.md, issue 17). Only orders a parallel ``recsys benchmark``'s work, the
    costliest first; never a limit."""

    @classmethod
    def component_models(cls, fields: Mapping[str, Any]) -> tuple[str, ...]:
        """Registry names of the models that a model built from ``fields`` fits as its parts
        (an ensemble's members, a two-stage model's ranker and retriever); () for a plain
        model. ``recsys benchmark`` runs a model after its components, in the same process,
        so that their fits are reused (``recsys.models.fit_cache``)."""
        return ()

    @classmethod
    def with_component_settings(
        cls, fields: Mapping[str, Any], chosen: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """``fields`` with the settings of its component models replaced by ``chosen`` (model
        name -> the full constructor fields that model runs with, e.g. as tuned on validation
        in the same run); None when no component is in ``chosen``."""
        return None

    def __init__(self) -> None:
        self.vocab: Vocabulary | None = None
        self._seen: sp.csr_matrix | None = None
        self._item_in_train: np.ndarray | None = None
        self.feedback = "explicit"
        self.train_result: TrainResult | None = None

    # --- to implement ---------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model (JSON-ready): by default the fields
        of its frozen config dataclass ``self.config``."""
        return to_jsonable(dataclasses.asdict(self.config))

    @property
    def seed(self) -> int:
        """The config's ``seed`` (0 for a model without randomness or without a config)."""
        return int(getattr(getattr(self, "config", None), "seed", 0))

    @abc.abstractmethod
    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        """Learn from ``split.train``; return ``TrainResult`` fields (epochs, history, ...)."""

    @abc.abstractmethod
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """[len(user_idx), len(item_idx)] float32 scores; higher is better."""

    @abc.abstractmethod
    def _save(self, path: Path) -> None:
        """Write the model's own parameters into directory ``path``."""

    @abc.abstractmethod
    def _load(self, path: Path) -> None:
        """Read what ``_save`` wrote (``vocab`` and the seen matrix are already restored)."""

    def n_parameters(self) -> int:
        return 0

    def device(self) -> str:
        return "cpu"

    # --- training -------------------------------------------------------------------------
    def fit(
        self,
        data: Processed,
        split: InteractionSplit | None = None,
        *,
        history: pd.DataFrame | None = None,
    ) -> TrainResult:
        """Train on ``split`` (default ``data.split``): ``train`` to learn, ``val`` to tune.

        Users and items are those of ``data.vocab``; ``data.features`` carries content.
        ``history``: the interactions the model knows (excluded from recommendations, never
        sampled as negatives), when they are more than it learns from (``recsys.models.update``
        trains on a batch and a replay sample); default ``split.train``.
        """
        split = split if split is not None else data.split
        if split.train.empty:
            raise DataError("cannot fit a recommender on an empty training set")
        self.vocab = data.vocab
        self.feedback = data.feedback
        self._seen = interaction_matrix(split.train if history is None else history, data.vocab)
        self._item_in_train = np.asarray(self._seen.getnnz(axis=0) > 0)
        start = time.perf_counter()
        facts = self._fit(data, split)
        seconds = time.perf_counter() - start
        facts.setdefault("device", self.device())
        self.train_result = TrainResult(
            model=self.name,
            fit_seconds=round(seconds, 4),
            n_parameters=self.n_parameters(),
            seed=self.seed,
            **facts,
        )
        return self.train_result

    # --- inference --------------------------------------------------------------------------
    @property
    def item_ids(self) -> np.ndarray:
        """Raw ids of the whole catalogue the model knows."""
        return self._vocab().item_ids

    @property
    def train_item_ids(self) -> np.ndarray:
        """Raw ids of the items seen in training."""
        return self._vocab().item_ids[self._train_mask()]

    def default_candidates(self) -> np.ndarray:
        """Item indices ranked when the caller gives none: all items a model can score."""
        if self.scores_cold_items:
            return np.arange(self._vocab().n_items)
        return np.flatnonzero(self._train_mask())

    def recommend(
        self,
        user_ids: Ids,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: Ids | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per user, best first.

        Args:
          user_ids: [n_users] raw user ids (known to the vocabulary).
          k: list length; fewer real items than k are padded with id -1 and score -inf.
          exclude_seen: drop the items each user interacted with in training.
          candidates: raw item ids to rank (default: ``default_candidates()``).
          allowed: [n_items] bool filter (genres, ...), combined with ``candidates``; given
            alone, the allowed items are the ones ranked, as ``candidates`` would be.

        Returns:
          ([n_users, k] raw item ids, [n_users, k] float32 scores).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        raw_users = id_array(user_ids)
        return self._recommend(raw_users, k, exclude_seen, self._eligible(candidates, allowed))

    def _eligible(self, candidates: Ids | None, allowed: np.ndarray | None) -> np.ndarray | None:
        """[n_items] bool: the items both ``candidates`` (raw ids) and ``allowed`` let through;
        None when neither is given."""
        if candidates is None:
            return None if allowed is None else np.asarray(allowed, dtype=bool)
        mask = np.zeros(self._vocab().n_items, dtype=bool)
        mask[self.encode_items(candidates)] = True
        return mask if allowed is None else mask & np.asarray(allowed, dtype=bool)

    def _recommend(
        self, raw_users: np.ndarray, k: int, exclude_seen: bool, eligible: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``recommend`` once its arguments are checked; ``eligible`` as ``_eligible`` gives it."""
        users = self.encode_users(raw_users)
        cand = self.default_candidates() if eligible is None else np.flatnonzero(eligible)
        ids = self._vocab().item_grid(len(users), k)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        item_raw = self._vocab().item_ids
        for lo, hi, block in blocks(users, USER_BLOCK):
            # A copy: _scores may return a read-only view or the model's own parameters.
            s = np.array(self._scores(block, cand), dtype=np.float32, copy=True)
            if exclude_seen:
                s[self._seen_block(block, cand)] = -np.inf
            top = top_k(s, k)  # fewer than k columns when there are fewer candidates
            top_scores = np.take_along_axis(s, top, axis=1)
            valid = np.isfinite(top_scores)
            width = top.shape[1]
            ids[lo:hi, :width] = np.where(valid, item_raw[cand[top]], ids[lo:hi, :width])
            scores[lo:hi, :width] = np.where(valid, top_scores, -np.inf)
        return ids, scores

    def rank_candidates(
        self, user_idx: int, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The serving re-ranking step, in index space: the best ``k`` of ``candidates``
        (distinct item indices, already filtered) for one user index, best first.

        Equal to ``recommend([user], k, exclude_seen=False, candidates=raw ids of candidates)``
        without the id conversions and per-block bookkeeping that cost as much as the scoring
        itself for ~200 candidates. Returns (item indices, float32 scores), shorter than ``k``
        when fewer candidates score finitely.
        """
        return self.rank_candidates_many(np.array([user_idx]), [candidates], k)[0]

    def rank_candidates_many(
        self, user_idx: np.ndarray, candidates: Sequence[np.ndarray], k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``rank_candidates`` for a batch of users (answer i for ``user_idx[i]`` and
        ``candidates[i]``), with one top-k over a [n, M] matrix instead of one per user: what
        the service's micro-batches call."""
        width = max((len(c) for c in candidates), default=0)
        if width == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in user_idx]
        cand = np.zeros((len(user_idx), width), dtype=np.int64)
        valid = np.zeros((len(user_idx), width), dtype=bool)
        for row, c in enumerate(candidates):
            cand[row, : len(c)] = np.sort(np.asarray(c, dtype=np.int64))  # ties: lower index
            valid[row, : len(c)] = True
        s = np.where(valid, self._candidate_scores(np.asarray(user_idx), cand), -np.inf)
        top = top_k(s, k)
        top_scores = np.take_along_axis(s, top, axis=1).astype(np.float32)
        keep = np.isfinite(top_scores)
        return [
            (cand[row, top[row][keep[row]]], top_scores[row][keep[row]])
            for row in range(len(user_idx))
        ]

    def _candidate_scores(self, user_idx: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """[n, M] scores of ``cand[i]`` (item indices) for ``user_idx[i]``: one ``_scores``
        call per user, each over only that user's candidates."""
        out = np.empty(cand.shape, dtype=np.float32)
        for row, user in enumerate(user_idx):
            out[row] = np.asarray(self._scores(np.array([user]), cand[row]), dtype=np.float32)[0]
        return out

    def score(self, user_ids: Ids, item_ids: Ids) -> np.ndarray:
        """[n] float32 scores of the pairs ``(user_ids[i], item_ids[i])``."""
        users, items = self.encode_users(user_ids), self.encode_items(item_ids)
        if users.shape != items.shape:
            raise ValueError("user_ids and item_ids must have the same length")
        out = np.empty(len(users), dtype=np.float32)
        # Score each user's items in one block: the dense hook, without a full catalogue row.
        order = np.argsort(users, kind="stable")
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        for group in np.split(order, bounds):
            if len(group):
                u = users[group[:1]]
                s = self._scores(u, items[group])
                out[group] = np.asarray(s, dtype=np.float32)[0]
        return out

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, d] item vectors for nearest-neighbour search, where the model has them."""
        return None

    def similar_items(self, item_ids: Ids, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` most similar items (cosine of item embeddings, or co-occurrence).

        Returns ([n, k] raw item ids, [n, k] float32 similarities), the query item excluded.
        """
        items = self.encode_items(item_ids)
        sims = item_similarities(self.item_embeddings(), self._seen_matrix(), items)
        cand_mask = np.zeros(sims.shape[1], dtype=bool)
        cand_mask[self.default_candidates()] = True
        return top_items(sims, k, self._vocab().item_ids, allowed=cand_mask, exclude=items)

    # --- ids ------------------------------------------------------------------------------
    def encode_users(self, user_ids: Ids) -> np.ndarray:
        return _encode(
            self._vocab().encode_users,
            user_ids,
            "user",
            "use ids from the training data, or a cold-start fallback",
        )

    def encode_items(self, item_ids: Ids) -> np.ndarray:
        return _encode(
            self._vocab().encode_items, item_ids, "item", "use ids from the item catalogue"
        )

    def known_users(self, user_ids: Ids) -> np.ndarray:
        """[n] bool: which raw user ids the model's vocabulary contains."""
        return self._vocab().encode_users(id_array(user_ids)) >= 0

    def known_items(self, item_ids: Ids) -> np.ndarray:
        """[n] bool: which raw item ids the model's vocabulary contains."""
        return self._vocab().encode_items(id_array(item_ids)) >= 0

    def seen_items(self, user_id: RawId) -> np.ndarray:
        """Raw ids of the items ``user_id`` interacted with in training."""
        return self._vocab().item_ids[self.seen_item_indices(user_id)]

    def item_popularity(self) -> np.ndarray:
        """[n_items] float32: training interactions per item (0 for cold items)."""
        return np.asarray(self._seen_matrix().getnnz(axis=0), dtype=np.float32)

    def seen_item_indices(self, user_id: RawId) -> np.ndarray:
        """Sorted vocabulary indices of the items ``user_id`` interacted with in training.

        Read straight from the CSR arrays: scipy's row indexing costs ~0.1 ms per call, a
        tenth of a served request at 1e6 items.
        """
        u = self.encode_users([user_id])[0]
        seen = self._seen_matrix()
        row = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        return row if seen.has_sorted_indices else np.sort(row)

    # --- persistence ----------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write the model to directory ``path`` atomically (vocabulary and seen items inside);
        the layout is ``recsys.models.persistence``'s."""
        from recsys.models.persistence import save_recommender

        save_recommender(self, Path(path))

    @classmethod
    def load(cls, path: Path | str) -> Self:
        """Read a model written by ``save``; ``Recommender.load`` dispatches on its name."""
        from recsys.models.persistence import load_recommender

        return load_recommender(cls, Path(path))

    def _fold_in(self, growth: Growth) -> None:
        """``recsys.models.fold_in``: take the grown vocabulary and histories. Enough for a
        model that scores from history rows; a model with per-user parameters extends it."""
        self.vocab, self._seen = growth.vocab, growth.history

    # --- helpers ----------------------------------------------------------------------------
    def _vocab(self) -> Vocabulary:
        return self._trained(self.vocab)

    def _seen_matrix(self) -> sp.csr_matrix:
        return self._trained(self._seen)

    def _train_mask(self) -> np.ndarray:
        return self._trained(self._item_in_train)

    def _trained(self, value: T | None) -> T:
        """``value``, set by ``fit`` or ``load``; a ``RecsysError`` before either."""
        if value is None:
            raise RecsysError(f"the {self.name} model is not trained", fix="call fit() or load()")
        return value

    def _seen_block(self, users: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """[len(users), len(cand)] bool: item cand[j] was seen by users[i] in training."""
        block = self._seen_matrix()[users][:, cand]
        return np.asarray(block.todense(), dtype=bool)


def _encode(
    encode: Callable[[np.ndarray], np.ndarray], ids: Ids, what: str, fix: str
) -> np.ndarray:
    """Vocabulary indices of raw ids; ``UnknownIdError`` naming the unknown ones."""
    raw = id_array(ids)
    idx = encode(raw)
    if (idx < 0).any():
        unknown = sorted(set(raw[idx < 0].tolist()), key=lambda v: (type(v).__name__, v))
        raise UnknownIdError(f"{len(unknown)} unknown {what} id(s): {unknown[:10]}", fix=fix)
    return idx


def with_part_params(
    fields: Mapping[str, Any], parts: Sequence[str], chosen: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    """A composite model's ``fields`` whose ``params`` (constructor fields per part model)
    take ``chosen[name]`` for each of ``parts`` in ``chosen``; None when none is."""
    overlay = {name: dict(chosen[name]) for name in dict.fromkeys(parts) if name in chosen}
    if not overlay:
        return None
    return {**fields, "params": {**dict(fields.get("params") or {}), **overlay}}
