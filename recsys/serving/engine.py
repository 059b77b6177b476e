"""What the service answers, without HTTP: two-stage recommendation, cold-start fallbacks,
filters, similar items, pair scores and explanations over one loaded ``TwoStage`` model (the
gated object: ``recsys.models.twostage``) and the item catalogue.

The BentoML service (``service.py``) is a thin shell over ``Engine``; tests and the offline
parity check call the same methods. Nothing here imports BentoML.

Fallbacks (RELIABILITY.md item 7), named in every answer:

- ``None``: a known user, ranked by the champion over the retrieved candidates;
- ``"popularity"``: an unknown user id, most-interacted training items (filters apply);
- ``"recent_items"``: an anonymous user given recent item ids: the nearest items to the mean
  of their two-tower item vectors (which embed content, so cold items can come back).

Unknown item ids and unknown genre names are request errors (``RequestError``, HTTP 422)
that name the field and the ids. Ids are those of the training data, integers or strings
(``recsys.schema.INT_IDS`` / ``STR_IDS``); an id of the other kind (the text ``"7"`` for a
model of integer user ids, the number 7 for one of string ids) is a ``RequestError`` with
HTTP 400 naming the field and the kind expected, never an unknown user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.config import ServingConfig
from recsys.data import io
from recsys.data.preprocess import Processed
from recsys.errors import DataError, RecsysError
from recsys.models.base import RawId, Recommender, top_k
from recsys.models.twostage import TwoStage, two_stage_of
from recsys.retrieval import ItemIndex
from recsys.schema import INT_IDS, ITEM_ID, id_array, id_kind, is_pad, pad_ids

CATALOGUE_FORMAT: Final = 1
STR_ITEM_IDS: Final = "item_ids.parquet"
"""A catalogue of string item ids keeps them here instead of ``item_ids.npy``."""
FALLBACK_POPULARITY: Final = "popularity"
FALLBACK_RECENT: Final = "recent_items"


class RequestError(RecsysError):
    """A well-formed request the models cannot answer: unknown ids, unknown genres.

    ``field`` names the request field; ``ids`` the offending values; ``status`` the HTTP code.
    """

    def __init__(
        self, what: str, *, field: str, ids: Sequence[Any] = (), status: int = 422
    ) -> None:
        self.field = field
        self.ids = list(ids)
        self.status = status
        super().__init__(what)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.what, "field": self.field}
        if self.ids:
            out["unknown_ids"] = self.ids
        return out


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Item ids and their genres (names included), for filters and explanations."""

    item_ids: np.ndarray
    """[n_items] raw ids, the models' item vocabulary."""
    genres: np.ndarray
    """[n_items, n_genres] bool."""
    genre_names: tuple[str, ...]

    @classmethod
    def from_processed(cls, data: Processed) -> Catalogue:
        return cls(
            item_ids=id_array(data.vocab.item_ids),
            genres=np.asarray(data.features.item_genres > 0),
            genre_names=tuple(data.features.genre_names),
        )

    def save(self, path: Path) -> None:
        if id_kind(self.item_ids) == INT_IDS:
            io.write_array(self.item_ids, path / "item_ids.npy")
        else:  # text: a Parquet column (a .npy of objects needs pickle to read back)
            io.write_table(pd.DataFrame({ITEM_ID: self.item_ids}), path / STR_ITEM_IDS)
        io.write_array(self.genres, path / "item_genres.npy")
        io.write_json(
            {"format": CATALOGUE_FORMAT, "genre_names": list(self.genre_names)},
            path / "catalogue.json",
        )

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        meta = io.read_json(io.require_file(path / "catalogue.json", "catalogue"))
        if meta.get("format") != CATALOGUE_FORMAT:
            raise DataError(f"unsupported catalogue format {meta.get('format')!r}", where=str(path))
        ids = (
            id_array(io.read_table(path / STR_ITEM_IDS)[ITEM_ID])
            if (path / STR_ITEM_IDS).is_file()
            else np.asarray(io.read_array(path / "item_ids.npy"), dtype=np.int64)
        )
        return cls(
            item_ids=ids,
            genres=np.asarray(io.read_array(path / "item_genres.npy"), dtype=bool),
            genre_names=tuple(meta["genre_names"]),
        )

    def genre_mask(self, names: Sequence[str] | None) -> np.ndarray | None:
        """[n_items] bool: items having at least one of ``names``; None when no filter."""
        if not names:
            return None
        lookup = {n.lower(): j for j, n in enumerate(self.genre_names)}
        unknown = [n for n in names if n.lower() not in lookup]
        if unknown:
            raise RequestError(
                f"unknown genre(s) {unknown}; known: {list(self.genre_names)}",
                field="genres",
                ids=unknown,
            )
        cols = [lookup[n.lower()] for n in names]
        return np.asarray(self.genres[:, cols].any(axis=1))


@dataclass(frozen=True)
class Provenance:
    """Where every answer comes from: the gated model, the data it was trained on, the
    parameters and the gate decision that blessed it."""

    model_tag: str
    retriever_tag: str
    """The retrieval part of the model: ``<model_tag>/<retriever family>``."""
    data_version: str
    index_type: str
    params_hash: str = "unknown"
    gate_decision: str = "unknown"
    """The decision file's id (``<registry>/decisions/...``) that promoted the model."""

    @cached_property
    def fields(self) -> dict[str, str]:
        """The lineage every answer carries, by field name (built once; callers copy it)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Ranked:
    """An answer: raw item ids and scores, best first (padding dropped), and the fallback."""

    item_ids: list[RawId]
    scores: list[float]
    fallback: str | None = None


@dataclass(frozen=True)
class Explanation:
    item_id: RawId
    score: float
    history: list[tuple[RawId, float]]
    """(history item id, cosine of its two-tower vector with the recommended item's)."""
    genres: list[tuple[str, float]]
    """(genre of the recommended item, share of the user's history having it)."""


class Engine:
    """The loaded two-stage model + catalogue; every public method takes and returns raw ids."""

    def __init__(
        self,
        model: Recommender,
        catalogue: Catalogue,
        cfg: ServingConfig | None = None,
        *,
        model_tag: str = "local",
        data_version: str = "unknown",
        params_hash: str = "unknown",
        gate_decision: str = "unknown",
    ) -> None:
        self.model: TwoStage = two_stage_of(model)
        self.ranker, retriever = self.model.parts()
        if not np.array_equal(catalogue.item_ids, self.ranker.item_ids):
            raise DataError("the catalogue's items are not the models' item vocabulary")
        self.catalogue = catalogue
        self.item_kind = id_kind(catalogue.item_ids)
        """The kind of the ids requests carry (``recsys.schema``): the training data's."""
        self.user_kind = id_kind(self.ranker.vocab.user_ids if self.ranker.vocab else [0])
        self.cfg = cfg or ServingConfig()
        self.index: ItemIndex = self.model.index
        vectors = self.index.vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit_vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        self.popularity = self.model.item_popularity()
        self.popularity_quantile = popularity_quantiles(self.popularity)
        self.provenance = Provenance(
            model_tag,
            f"{model_tag}/{retriever.name}",
            data_version,
            self.index.kind,
            params_hash,
            gate_decision,
        )

    # --- ids --------------------------------------------------------------------------------
    def known_user(self, user_id: RawId) -> bool:
        return bool(self.ranker.known_users(self.user_array([user_id], "user_id"))[0])

    def user_array(self, user_ids: Sequence[RawId], field: str) -> np.ndarray:
        """Raw user ids as an array of the model's id kind; ``RequestError`` (400) when they
        are of the other kind."""
        return _of_kind(user_ids, self.user_kind, field, "user")

    def item_index(self, item_ids: Sequence[RawId], field: str) -> np.ndarray:
        """Raw ids -> indices; ``RequestError`` naming ``field`` and every unknown id (422),
        or the kind expected (400)."""
        raw = _of_kind(item_ids, self.item_kind, field, "item")
        known = self.ranker.known_items(raw)
        if not known.all():
            unknown = sorted(set(raw[~known].tolist()))
            raise RequestError(
                f"{len(unknown)} unknown item id(s) in '{field}': {unknown[:20]}",
                field=field,
                ids=unknown,
            )
        return self.ranker.encode_items(raw)

    def served_quantiles(self, ranked: Ranked) -> np.ndarray:
        """The popularity quantiles of an answer's items (the served-popularity metric)."""
        raw = _of_kind(ranked.item_ids, self.item_kind, "item_ids", "item")
        return self.popularity_quantile[self.ranker.encode_items(raw)]

    # --- answers ----------------------------------------------------------------------------
    def recommend(
        self,
        user_id: RawId,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        genres: Sequence[str] | None = None,
    ) -> Ranked:
        """Two-stage for a known user; popularity for an unknown one."""
        return self.recommend_many([user_id], k, exclude_seen=exclude_seen, genres=genres)[0]

    def recommend_many(
        self,
        user_ids: Sequence[RawId],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        genres: Sequence[str] | None = None,
    ) -> list[Ranked]:
        """``recommend`` for many users in one pass (one ANN search for all known users): what
        the service's micro-batcher calls. Answer i is exactly ``recommend(user_ids[i], ...)``."""
        allowed = self.catalogue.genre_mask(genres)
        raw = self.user_array(user_ids, "user_id")
        known = self.ranker.known_users(raw)
        out: list[Ranked] = []
        if not known.all():
            fallback = self.popular(k, allowed)
            out = [fallback] * len(raw)
        if known.any():
            ids, scores = self.model.recommend(
                raw[known], k, exclude_seen=exclude_seen, allowed=allowed
            )
            answers = [_ranked(i, s) for i, s in zip(ids, scores, strict=True)]
            if known.all():
                return answers
            for row, answer in zip(np.flatnonzero(known), answers, strict=True):
                out[row] = answer
        return out

    def popular(self, k: int, allowed: np.ndarray | None = None) -> Ranked:
        s = np.where(self.popularity > 0, self.popularity / self.popularity.sum(), -np.inf)[None, :]
        if allowed is not None:
            s = np.where(allowed[None, :], s, -np.inf)
        top = top_k(s, k)[0]
        return _ranked(self.ranker.item_ids[top], s[0, top], FALLBACK_POPULARITY)

    def recommend_recent(
        self, item_ids: Sequence[RawId], k: int = 10, *, genres: Sequence[str] | None = None
    ) -> Ranked:
        """An anonymous user: nearest items to the mean two-tower vector of ``item_ids``."""
        idx = self.item_index(item_ids, "item_ids")
        allowed = self.catalogue.genre_mask(genres)
        query = self.unit_vectors[idx].mean(axis=0, keepdims=True)
        found, scores = self.index.search(query, k, exclude=[idx], allowed=allowed)
        return _ranked(_raw(self.ranker.item_ids, found[0]), scores[0], FALLBACK_RECENT)

    def similar_items(self, item_id: RawId, k: int = 10) -> Ranked:
        """Nearest items to ``item_id`` by two-tower item vectors (inner product)."""
        idx = self.item_index([item_id], "item_id")
        found, scores = self.index.search(self.index.vectors[idx], k, exclude=[idx])
        return _ranked(_raw(self.ranker.item_ids, found[0]), scores[0])

    def score(self, user_id: RawId, item_ids: Sequence[RawId]) -> Ranked:
        """Champion scores of (user, item) pairs in request order; for an unknown user the
        items' training popularity (share of interactions), fallback ``popularity``."""
        idx = self.item_index(item_ids, "item_ids")
        raw = self.ranker.item_ids[idx]
        if not self.known_user(user_id):
            share = self.popularity[idx] / max(float(self.popularity.sum()), 1.0)
            return Ranked(raw.tolist(), share.astype(float).tolist(), FALLBACK_POPULARITY)
        s = self.ranker.score(self.user_array([user_id] * len(raw), "user_id"), raw)
        return Ranked(raw.tolist(), [_finite(x) for x in s.tolist()])

    def explain(
        self,
        user_id: RawId,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        genres: Sequence[str] | None = None,
    ) -> tuple[Ranked, list[Explanation]]:
        """``recommend``, plus for each item the user's history items closest to it (cosine of
        two-tower item vectors) and its genres weighted by their share of the user's history.

        These are attributions by similarity, not gradients of the ranking model.
        """
        ranked = self.recommend(user_id, k, exclude_seen=exclude_seen, genres=genres)
        history = (
            self.ranker.seen_item_indices(user_id)
            if self.known_user(user_id)
            else np.zeros(0, dtype=np.int64)
        )
        profile = (
            self.catalogue.genres[history].mean(axis=0)
            if len(history)
            else np.zeros(len(self.catalogue.genre_names))
        )
        out = []
        n_hist = min(self.cfg.explain_history, len(history))
        for item, score in zip(ranked.item_ids, ranked.scores, strict=True):
            i = int(self.ranker.encode_items([item])[0])
            pairs: list[tuple[RawId, float]] = []
            if n_hist:
                sims = (self.unit_vectors[history] @ self.unit_vectors[i])[None, :]
                top = top_k(sims, n_hist)[0]
                near = self.ranker.item_ids[history[top]].tolist()  # Python ints or str
                pairs = [(i, round(float(sims[0, j]), 6)) for i, j in zip(near, top, strict=True)]
            cols = np.flatnonzero(self.catalogue.genres[i])
            weighted = sorted(
                ((self.catalogue.genre_names[c], round(float(profile[c]), 6)) for c in cols),
                key=lambda t: (-t[1], t[0]),
            )
            out.append(Explanation(item, score, pairs, weighted))
        return ranked, out


def _raw(item_raw: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.where(idx >= 0, item_raw[np.maximum(idx, 0)], pad_ids(idx.shape, id_kind(item_raw)))


def popularity_quantiles(popularity: np.ndarray) -> np.ndarray:
    """Per item: its rank by training interactions as a quantile, 0 (most) .. 1 (least)."""
    order = np.argsort(-np.asarray(popularity), kind="stable")
    out = np.empty(len(order), dtype=np.float64)
    out[order] = np.arange(len(order)) / max(len(order) - 1, 1)
    return out


def _of_kind(ids: Sequence[RawId], kind: str, field: str, what: str) -> np.ndarray:
    raw = id_array(ids)
    if len(raw) and id_kind(raw) != kind:
        expected = "integers" if kind == INT_IDS else "strings"
        raise RequestError(
            f"'{field}': this model's {what} ids are {expected}, as in its training data",
            field=field,
            status=400,
        )
    return raw


def _finite(x: float) -> float:
    """JSON has no NaN or infinities: clamp them (-inf: an item the model never ranks)."""
    return float(np.nan_to_num(x, nan=0.0, posinf=3.0e38, neginf=-3.0e38))


def _ranked(ids: np.ndarray, scores: np.ndarray, fallback: str | None = None) -> Ranked:
    """Drop the -1 (or "") / -inf padding (fewer eligible items than k)."""
    keep = ~is_pad(np.asarray(ids)) & np.isfinite(scores)
    return Ranked(
        np.asarray(ids)[keep].tolist(),
        [float(s) for s in np.asarray(scores)[keep]],
        fallback,
    )


def load_engine(
    model_dir: Path, catalogue_dir: Path, cfg: ServingConfig | None = None, **provenance: str
) -> Engine:
    """Load the saved two-stage model and the catalogue (only from these directories: the model
    store's paths). A two-tower model ranking its own candidates is stored and loaded once
    (``TwoStage`` keeps one copy: at 1e6 items a second cost 0.8 GiB per worker)."""
    return Engine(Recommender.load(model_dir), Catalogue.load(catalogue_dir), cfg, **provenance)
