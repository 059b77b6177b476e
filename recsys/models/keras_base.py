"""What every Keras-backed recommender shares: its config, its Keras model, its training run
through ``recsys.train.fit_model``, the numpy snapshot it scores from, and ``.keras``
persistence (byte-reproducible: ``save_keras_model``).

A subclass sets ``name`` and ``config_class`` (a frozen dataclass with ``seed``,
``learning_rate``, ``epochs`` ... fields) and implements ``_fit`` (build the model, then
``_train``), ``_extract`` (a numpy snapshot of what scoring needs, from the current weights)
and ``_scores``; ``_snapshot()`` caches the snapshot until the next fit or load.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import pandas as pd

from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import ConfigError, RecsysError
from recsys.models.base import Recommender, TrainResult, resolve_config
from recsys.models.model_config import kept_epochs
from recsys.models.tuning import TuningRequest
from recsys.train import (
    ITEM,
    USER,
    DevicePlan,
    EpochArrays,
    PeriodicValidation,
    RankingValidation,
    TrainSettings,
    fit_model,
)

__all__ = [
    "MODEL_FILE",
    "TUNED_METRIC",
    "EpochsTuned",
    "KerasRecommender",
    "pair_inputs",
    "pair_model",
    "predict_pairs",
    "save_keras_model",
]

MODEL_FILE = "model.keras"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The date of every entry of a saved ``.keras`` zip (the zip format's earliest date)."""
TUNED_METRIC = "ndcg@10"
"""The benchmark metric ``EpochsTuned.tune`` optimizes (what ``RankingValidation`` measures)."""
SAVE_DATE = "1980-01-01@00:00:00"
"""``date_saved`` written into the zip's ``metadata.json`` (Keras' own format, fixed value)."""


class KerasRecommender(Recommender):
    """A ``Recommender`` whose parameters live in one Keras model (``self._model``), built from a
    frozen config dataclass (``self.config``), trained on ``self._device``.

    Construct with a ``config_class`` instance or its fields as keywords; unknown keys raise
    ``ConfigError``.
    """

    config_class: ClassVar[type[Any]]
    _checkpoint_dir: Path | str | None = None
    """Set by ``fit`` for the duration of one call; ``_train`` hands it to ``fit_model``."""
    warm_from: Any = None
    """Set by ``recsys.models.update`` for one ``fit``: a ``WarmSource`` whose weights
    ``_train`` copies into the freshly built model before training it (a warm start)."""

    def __init__(self, config: Any = None, **fields: Any) -> None:
        super().__init__()
        self.config: Any = resolve_config(self.config_class, config, fields, self.name)
        self._model: keras.Model | None = None
        self._snapshot_cache: Any = None
        self._device = "cpu"

    def fit(
        self,
        data: Processed,
        split: InteractionSplit | None = None,
        *,
        history: pd.DataFrame | None = None,
        checkpoint_dir: Path | str | None = None,
    ) -> TrainResult:
        """Train (see ``Recommender.fit``); with ``checkpoint_dir``, checkpoint every epoch
        there and resume from what is already there."""
        self._check_data(data)
        self._checkpoint_dir = checkpoint_dir
        try:
            return super().fit(data, split, history=history)
        finally:
            self._checkpoint_dir = None

    def _check_data(self, data: Processed) -> None:
        """Refuse data the model cannot learn from, before anything is fitted."""

    def n_parameters(self) -> int:
        return 0 if self._model is None else int(self._model.count_params())

    def device(self) -> str:
        return self._device

    @property
    def keras_model(self) -> keras.Model:
        if self._model is None:
            raise RecsysError(f"the {self.name} model is not trained", fix="call fit() or load()")
        return self._model

    # --- training ---------------------------------------------------------------------------
    def _optimizer(self, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
        """Adam, or AdamW when the config has a ``weight_decay`` > 0.

        With ``lr_schedule: cosine`` in the config and ``steps_per_epoch`` given, the learning
        rate follows a cosine from ``learning_rate`` down to zero at the last of ``epochs``
        (Loshchilov & Hutter, SGDR): the last epoch's weights, which a refit without
        validation keeps, are then those of a settled run rather than of one more noisy step.
        """
        cfg = self.config
        weight_decay = getattr(cfg, "weight_decay", 0.0)
        rate: Any = cfg.learning_rate
        if getattr(cfg, "lr_schedule", "constant") == "cosine" and steps_per_epoch:
            span = int(getattr(cfg, "schedule_epochs", 0) or 0)
            if span < 0:
                raise ConfigError(
                    f"{self.name}.schedule_epochs must be >= 0 (0: epochs), got {span}"
                )
            rate = keras.optimizers.schedules.CosineDecay(
                cfg.learning_rate,
                decay_steps=max(1, int(steps_per_epoch) * (span or int(cfg.epochs))),
            )
        # Fixed names: Keras numbers unnamed objects per process ("adam_1" for the second),
        # and the name is saved with the optimizer's variables (save_keras_model).
        if weight_decay > 0:
            return keras.optimizers.AdamW(rate, weight_decay=weight_decay, name="adamw")
        return keras.optimizers.Adam(rate, name="adam")

    def _ranking_validation(
        self, split: InteractionSplit, scorer: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> RankingValidation | None:
        """Full-ranking NDCG@10 of ``split.val``'s rows over the trained items, scored by
        ``scorer`` (the live weights) for at most the config's ``eval_users``; None without
        validation rows."""
        if not len(split.val):
            return None
        cfg = self.config
        return RankingValidation(
            scorer,
            self._seen_matrix(),
            split.val,
            np.flatnonzero(self._train_mask()),
            max_users=cfg.eval_users,
            seed=cfg.seed,
        )

    def _train(
        self,
        model: keras.Model,
        epoch_data: Callable[[int], EpochArrays],
        plan: DevicePlan,
        validation: PeriodicValidation | None,
        *,
        group: int = 1,
    ) -> dict[str, Any]:
        """Run ``fit_model`` on the compiled ``model`` with the config's loop settings; the
        model becomes this recommender's and its snapshot is taken afresh when next asked.
        ``group``: rows per softmax group (``TrainSettings.group``)."""
        cfg = self.config
        self._model = model
        self._snapshot_cache = None
        if self.warm_from is not None:
            self.warm_from.apply(model)
        facts = fit_model(
            model,
            epoch_data,
            TrainSettings(
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                patience=cfg.patience,
                eval_every=cfg.eval_every,
                verbose=cfg.verbose,
                group=group,
            ),
            plan=plan,
            validation=validation,
            checkpoint_dir=self._checkpoint_dir,
        )
        self._device = plan.description
        self._snapshot_cache = None
        return facts

    # --- scoring ----------------------------------------------------------------------------
    def _extract(self) -> Any:
        """A numpy snapshot of what scoring needs, from the current weights."""
        raise NotImplementedError

    def _snapshot(self) -> Any:
        """``_extract()`` of the trained (or loaded) weights, computed once."""
        if self._snapshot_cache is None:
            self._snapshot_cache = self._extract()
        return self._snapshot_cache

    # --- persistence ------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        save_keras_model(self.keras_model, path / MODEL_FILE)

    def _load(self, path: Path) -> None:
        self._model = keras.saving.load_model(path / MODEL_FILE, compile=False)
        self._snapshot_cache = None
        if self.train_result is not None:
            self._device = self.train_result.device


class EpochsTuned:
    """``recsys benchmark``'s ``Tunable`` hook for a model whose fit validates on ``split.val``
    with full-ranking NDCG@10 (``RankingValidation``) and keeps the best epoch: it chooses
    ``epochs`` on the validation files. The class must take ``eval_users`` in its config."""

    @classmethod
    def tune(cls, request: TuningRequest) -> dict[str, Any]:
        """One fit on ``val_split.train`` whose loop validates on ``val_split.test`` (the
        validation files' held-out rows, every user: the full-ranking NDCG@10 of PROTOCOL.md)
        with the configured ``patience``, up to the configured ``epochs``; returns
        ``{"epochs": best epoch}``. Other metrics (``loo``, ``rating``) tune nothing.
        """
        val_split = request.val_split
        if request.metric != TUNED_METRIC or val_split.test.empty:
            return {}
        model: Any = cls(**{**request.config, "eval_users": 1 << 30})
        result = model.fit(request.data, dataclasses.replace(val_split, val=val_split.test))
        return kept_epochs(model.config_dict(), int(result.best_epoch or result.epochs))


def save_keras_model(model: keras.Model, path: Path) -> None:
    """``model.save(path)`` with the same bytes for the same weights (issue #16).

    Keras writes three things into a ``.keras`` zip that change from one save of the same
    weights to the next: ``date_saved`` in ``metadata.json``, the zip entry time of
    ``model.weights.h5``, and in ``config.json`` each ``shared_object_id`` (the Python ``id()``
    of an object the config shares, e.g. a regularizer: a memory address). Here the dates are
    fixed and the ids renumbered 0, 1, ... in order of appearance (one number per object, so
    the sharing is kept), so a retrained model with identical weights has the same file and
    DVC the same hash. Entries, their order and compression are Keras' own;
    ``keras.saving.load_model`` reads the file as before (it never reads ``date_saved``), and
    files saved earlier still load.
    """
    path = Path(path)
    model.save(path)
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        for info, data in entries:
            if info.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": SAVE_DATE}).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)
    tmp.replace(path)


def _renumber_shared_objects(config: Any, ids: dict[int, int]) -> Any:
    """``config`` with every ``shared_object_id`` replaced by its first-appearance number."""
    if isinstance(config, dict):
        return {
            key: ids.setdefault(value, len(ids))
            if key == "shared_object_id"
            else _renumber_shared_objects(value, ids)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_renumber_shared_objects(value, ids) for value in config]
    return config


def pair_model(net: keras.layers.Layer, name: str) -> keras.Model:
    """The Keras model ``{"user": int32 [b], "item": int32 [b]} -> net([user, item])``."""
    user, item = pair_inputs()
    return keras.Model({USER: user, ITEM: item}, net([user, item]), name=name)


def pair_inputs() -> tuple[Any, Any]:
    """The ``user`` and ``item`` inputs (int32 [b]) of a model that scores index pairs."""
    user = keras.Input(shape=(), dtype="int32", name=USER)
    item = keras.Input(shape=(), dtype="int32", name=ITEM)
    return user, item


def predict_pairs(
    model: keras.Model, user_idx: np.ndarray, item_idx: np.ndarray, batch_size: int = 8192
) -> np.ndarray:
    """[n] float32 outputs of a pair model's ``predict``: the slow reference that the fast
    numpy scorers must equal."""
    out = model.predict(
        {USER: np.asarray(user_idx, dtype=np.int32), ITEM: np.asarray(item_idx, dtype=np.int32)},
        batch_size=batch_size,
        verbose=0,
    )
    return np.asarray(out, dtype=np.float32).reshape(-1)
