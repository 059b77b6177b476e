"""A weighted ensemble of recommenders: ``score = sum_k w_k (s_k - mean_k) / std_k``.

Each member is trained on the same data as the ensemble, and its scores are put on one scale
by a *global* standardization (mean and standard deviation of the member's scores over a
sample of unseen (user, item) pairs, measured once after training). A global scale, unlike a
per-user one, gives a pair the same score whether it is ranked among all items or scored
alone (``Recommender.score``), so serving and evaluation agree.

Never below its best member on validation (issue 17): the weights are chosen on validation
rows - by ``Ensemble.tune`` on the validation files (``recsys benchmark``'s tuning hook), or in
``fit`` on ``split.val`` when the split has one and no weights are given (the pipeline) - among
every member alone (one-hot weights) and the blends of ``WEIGHT_GRID``. A blend is chosen only
when it scores strictly above the best member alone; otherwise the ensemble IS that member:
``tune`` returns it as the only member (one-hot weights without fitting the others again), and
``fit`` keeps the one-hot weights. Either way ``config.selection`` records every candidate's
validation score and the choice, and the train record's ``extra`` repeats it (``acts_as``:
the member an ensemble with one active member is).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data import io
from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import ConfigError, RecsysError
from recsys.models.base import Recommender, with_part_params
from recsys.models.baselines import resolve_config
from recsys.models.tuning import TuningRequest

MEMBERS_DIR = "members"
STATS_FILE = "ensemble.json"
STAT_USERS = 512
STAT_ITEMS = 4096
"""Users and items sampled for each member's score mean and standard deviation (a block of at
most 2M pairs, whatever the catalogue size)."""
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
"""Relative weights searched in the blends for every member but the best one alone (whose
weight is 1); each member alone is a candidate too."""
SELECTION_METRIC = "ndcg@10"
"""What ``fit`` maximises when it chooses the weights on ``split.val`` (``tune``: the
request's metric)."""


@dataclass(frozen=True)
class EnsembleConfig:
    """Which models to blend (``params.yaml``: ``models.ensemble``)."""

    members: tuple[str, ...] = ("ease", "twotower")
    """Registry names, at most once each. ``name@N`` is a replica of model ``name`` trained
    with ``seed`` N: ``[neumf@1, neumf@2,
    neumf@3]`` averages three NeuMF networks that differ only by their random seed (a seed
    bag: it removes the seed's variance from the ranking)."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Constructor fields per member (``models.<name>``): keyed by the model name (for all
    of its replicas) or by a replica's full ``name@N``."""
    weights: tuple[float, ...] | None = None
    """One weight per member (None: equal weights, or what ``tune`` chooses; given weights
    are used as they are, ``tune`` leaves them alone)."""
    selection: dict[str, Any] | None = None
    """How the weights were chosen on validation (``Selection.record``): each member's and
    the best blend's score, and the choice. Written by ``tune`` / ``fit``; not a setting."""
    seed: int = 20240101

    def __post_init__(self) -> None:
        members = tuple(self.members)
        models = {member_model(m) for m in members}
        if not members or len(set(members)) != len(members) or "ensemble" in models:
            raise ConfigError(
                f"ensemble.members must name distinct models other than 'ensemble', got {members}"
            )
        for member in members:
            base, at, seed = member.partition("@")
            if not base or (at and not seed.isdigit()):
                raise ConfigError(
                    f"ensemble member {member!r} is neither a model name nor name@SEED",
                    fix="e.g. 'neumf' or 'neumf@2'",
                )
        from recsys.models.registry import MODELS

        unregistered = sorted(models - set(MODELS))
        if unregistered:
            raise ConfigError(
                f"ensemble.members names unknown models: {unregistered}",
                fix=f"choose from {', '.join(sorted(set(MODELS) - {'ensemble'}))}",
            )
        object.__setattr__(self, "members", members)
        unknown = sorted(set(self.params) - set(members) - models)
        if unknown:
            raise ConfigError(
                f"ensemble.params names models that are not members: {unknown}",
                fix=f"members are {list(members)}",
            )
        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            if len(weights) != len(members) or not all(np.isfinite(weights)):
                raise ConfigError(
                    f"ensemble.weights needs one finite number per member ({len(members)}), "
                    f"got {self.weights}"
                )
            if min(weights) < 0 or max(weights) <= 0:
                raise ConfigError("ensemble.weights must be >= 0 with at least one > 0")
            object.__setattr__(self, "weights", weights)


class Ensemble(Recommender):
    """A weighted sum of standardized member scores (see the module docstring)."""

    name = "ensemble"
    fit_cost = 30.0  # its validation fits of the members (their own fits are reused)

    @classmethod
    def component_models(cls, fields: Mapping[str, Any]) -> tuple[str, ...]:
        members = EnsembleConfig(**{k: v for k, v in fields.items() if k == "members"}).members
        return tuple(dict.fromkeys(member_model(m) for m in members))

    @classmethod
    def with_component_settings(
        cls, fields: Mapping[str, Any], chosen: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        return with_member_settings(fields, chosen)

    def __init__(self, config: EnsembleConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(EnsembleConfig, config, fields, self.name)
        self.models: list[Recommender] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def weights(self) -> np.ndarray:
        w = self.config.weights or (1.0,) * len(self.config.members)
        return np.asarray(w, dtype=np.float64)

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        """Every member's requirements (``recsys.models.requirements``)."""
        from recsys.models.registry import model_class

        needs = [model_class(name).requires for name, _ in self.member_configs()]
        return frozenset().union(*needs)

    @property
    def scores_cold_items(self) -> bool:  # type: ignore[override]
        return bool(self.models) and all(m.scores_cold_items for m in self._active())

    def n_parameters(self) -> int:
        return sum(m.n_parameters() for m in self.models)

    def device(self) -> str:
        devices = sorted({m.device() for m in self.models})
        return ",".join(devices) or "cpu"

    def member_configs(self) -> list[tuple[str, dict[str, Any]]]:
        """(registry name, constructor fields) per member, replicas' seeds filled in."""
        out = []
        for member in self.config.members:
            name, _, seed = member.partition("@")
            fields = {**self.config.params.get(name, {}), **self.config.params.get(member, {})}
            if seed:
                fields["seed"] = int(seed)
            out.append((name, fields))
        return out

    # --- training -------------------------------------------------------------------------
    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        from recsys.models.fit_cache import fitted

        self.models = []
        members: dict[str, Any] = {}
        for member, (name, fields) in zip(self.config.members, self.member_configs(), strict=True):
            model, reused = fitted(name, fields, data, split)  # reused: fitted earlier this run
            assert model.train_result is not None
            self.models.append(model)
            members[member] = {**model.train_result.summary(), "reused": reused}
        self._standardize()
        if self.config.weights is None and len(split.val) and len(self.models) > 1:
            choice = self.choose_weights(self._val_scorer(split), SELECTION_METRIC)
            self.config = dataclasses.replace(
                self.config, weights=choice.weights, selection=choice.record()
            )
        extra: dict[str, Any] = {"members": members, "weights": self.weights.tolist()}
        active = [m for m, w in zip(self.config.members, self.weights, strict=True) if w > 0]
        if len(active) == 1:
            extra["acts_as"] = active[0]
        if self.config.selection is not None:
            extra["selection"] = self.config.selection
        return {"extra": extra}

    def _val_scorer(self, split: InteractionSplit) -> Callable[[Ensemble], float]:
        """NDCG@10 on ``split.val`` of a copy with other weights (``choose_weights``)."""
        from recsys.evaluation.evaluate import evaluate_topk  # evaluation imports models.base

        def value(candidate: Ensemble) -> float:
            result = evaluate_topk(candidate, split.train, split.val, (10,), n_boot=1)
            return float(result.metrics[SELECTION_METRIC])

        return value

    def _standardize(self) -> None:
        """Each member's score mean and std over unseen pairs of a user sample."""
        seen = self._seen_matrix()
        rng = np.random.default_rng(self.config.seed)
        users = np.flatnonzero(seen.getnnz(axis=1) > 0)
        users = np.sort(rng.choice(users, size=min(STAT_USERS, len(users)), replace=False))
        items = np.flatnonzero(self._train_mask())
        items = np.sort(rng.choice(items, size=min(STAT_ITEMS, len(items)), replace=False))
        unseen = ~self._seen_block(users, items)
        mean, std = [], []
        for model in self.models:
            s = np.asarray(model._scores(users, items), dtype=np.float64)[unseen]
            mean.append(float(s.mean()))
            std.append(float(s.std()) or 1.0)  # a constant scorer adds nothing to the ranking
        self.mean, self.std = np.asarray(mean), np.asarray(std)

    @classmethod
    def tune(cls, request: TuningRequest) -> dict[str, Any]:
        """Choose the blend on the validation files (``recsys benchmark``'s ``Tunable`` hook).

        The members are fitted once on ``val_split.train`` (with ``val_split.val`` emptied, so
        ``fit`` does not choose by itself) and ``choose_weights`` scores the candidates with
        ``evaluate_fn`` on ``val_split.test``. Returns ``weights`` and ``selection`` for a
        blend, or, when no blend beats the best member, that member as the only one.
        """
        val_split = request.val_split
        ensemble = cls(**request.config)
        if val_split.test.empty or ensemble.config.weights is not None:
            return {}
        ensemble.fit(request.data, dataclasses.replace(val_split, val=val_split.val.iloc[:0]))

        def value(candidate: Ensemble) -> float:
            result = request.evaluate_fn(candidate, val_split.train, val_split.test, (10,))
            return float(result.metrics[request.metric])

        choice = ensemble.choose_weights(value, request.metric)
        if choice.blend:
            return {"weights": list(choice.weights), "selection": choice.record()}
        member = choice.best_member
        name = member_model(member)
        params = {k: v for k, v in ensemble.config.params.items() if k in (name, member)}
        return {
            "members": [member],
            "params": params,
            "weights": [1.0],
            "selection": choice.record(),
        }

    def choose_weights(self, value: Callable[[Ensemble], float], metric: str) -> Selection:
        """The best of every member alone and the ``WEIGHT_GRID`` blends (the best member
        alone at weight 1, every other member on the grid), by ``value`` (a validation score,
        higher is better) of a copy with those weights. A blend wins only strictly above the
        best member alone (ties: the earlier candidate)."""
        members = self.config.members
        n = len(members)
        alone = {}
        for j, member in enumerate(members):
            alone[member] = value(self.with_weights(tuple(float(i == j) for i in range(n))))
        best_member = max(members, key=lambda m: alone[m])  # first of equals
        blend: tuple[float, tuple[float, ...]] | None = None
        ref = members.index(best_member)  # the best member alone at 1, the others on the grid
        for rest in itertools.product(WEIGHT_GRID, repeat=n - 1):
            weights = (*rest[:ref], 1.0, *rest[ref:])
            if sum(w > 0 for w in weights) < 2:
                continue  # a member alone: scored above
            score = value(self.with_weights(weights))
            if blend is None or score > blend[0]:
                blend = (score, weights)
        wins = blend is not None and blend[0] > alone[best_member]
        one_hot = tuple(float(m == best_member) for m in members)
        return Selection(
            metric=metric,
            member_scores=alone,
            best_member=best_member,
            blend_score=None if blend is None else blend[0],
            blend_weights=None if blend is None else blend[1],
            weights=blend[1] if wins and blend is not None else one_hot,
            blend=wins,
        )

    def with_weights(self, weights: tuple[float, ...]) -> Ensemble:
        """A copy sharing the trained members, with other weights (no refit)."""
        other = Ensemble(dataclasses.replace(self.config, weights=weights))
        other.vocab, other._seen, other._item_in_train = self.vocab, self._seen, self._item_in_train
        other.feedback, other.train_result = self.feedback, self.train_result
        other.models, other.mean, other.std = self.models, self.mean, self.std
        return other

    # --- scoring ----------------------------------------------------------------------------
    def _active(self) -> list[Recommender]:
        return [m for m, w in zip(self.models, self.weights, strict=True) if w > 0]

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        mean, std = self._stats()
        out = np.zeros((len(user_idx), len(item_idx)), dtype=np.float64)
        for model, w, mu, sd in zip(self.models, self.weights, mean, std, strict=True):
            if w > 0:
                out += (w / sd) * (np.asarray(model._scores(user_idx, item_idx)) - mu)
        return out.astype(np.float32)

    def item_embeddings(self) -> np.ndarray | None:
        """The first member's that has them (the retrieval stage of serving)."""
        for model in self._active():
            emb = model.item_embeddings()
            if emb is not None:
                return emb
        return None

    # --- persistence ------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        mean, std = self._stats()
        for i, model in enumerate(self.models):
            model.save(path / MEMBERS_DIR / f"{i}-{model.name}")
        io.write_json({"mean": mean.tolist(), "std": std.tolist()}, path / STATS_FILE)

    def _load(self, path: Path) -> None:
        self.models = [
            Recommender.load(path / MEMBERS_DIR / f"{i}-{member_model(member)}")
            for i, member in enumerate(self.config.members)
        ]
        stats = io.read_json(path / STATS_FILE)
        self.mean = np.asarray(stats["mean"], dtype=np.float64)
        self.std = np.asarray(stats["std"], dtype=np.float64)

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None or not self.models:
            raise RecsysError("the ensemble model is not trained", fix="call fit() or load()")
        return self.mean, self.std


@dataclass(frozen=True)
class Selection:
    """What ``Ensemble.choose_weights`` found on validation."""

    metric: str
    member_scores: dict[str, float]
    """Each member alone (one-hot weights)."""
    best_member: str
    blend_score: float | None
    """The best blend of two or more members (None: a single member, no blend to try)."""
    blend_weights: tuple[float, ...] | None
    weights: tuple[float, ...]
    """The blend's weights when it won, else the best member's one-hot vector."""
    blend: bool
    """True: the blend scored strictly above the best member alone."""

    def record(self) -> dict[str, Any]:
        """JSON-ready, with the sentence the train record and the benchmark show."""
        best = self.member_scores[self.best_member]
        if self.blend:
            says = f"the blend beats the best member {self.best_member} on validation"
        else:
            says = f"no blend beats {self.best_member} on validation: the ensemble is it alone"
        return {
            "metric": self.metric,
            "member_scores": {k: round(v, 6) for k, v in self.member_scores.items()},
            "best_member": self.best_member,
            "best_member_score": round(best, 6),
            "blend_score": None if self.blend_score is None else round(self.blend_score, 6),
            "blend_weights": None if self.blend_weights is None else list(self.blend_weights),
            "chosen": "blend" if self.blend else self.best_member,
            "summary": says,
        }


def member_model(member: str) -> str:
    """The registry name of an ensemble member (``neumf@2`` -> ``neumf``)."""
    return member.partition("@")[0]


def with_member_settings(
    fields: Mapping[str, Any], tuned: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    """An ensemble's constructor ``fields`` with the settings of its members' models replaced
    by ``tuned`` (model name -> constructor fields, e.g. what ``recsys tune`` chose for them);
    None when none of its members' models is in ``tuned``. Replicas keep their own seeds."""
    return with_part_params(fields, Ensemble.component_models(fields), tuned)
