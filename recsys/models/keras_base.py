"""What every Keras-backed recommender shares: its config, its Keras model and its device."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras

from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import RecsysError
from recsys.models.base import Recommender, TrainResult, to_jsonable


class KerasRecommender(Recommender):
    """A ``Recommender`` whose parameters live in one Keras model (``self._model``), built from a
    frozen config dataclass (``self.config``), trained on ``self._device``."""

    config: Any
    _model: keras.Model | None
    _device: str
    _checkpoint_dir: Path | str | None = None
    """Set by ``fit`` for the duration of one call; ``_fit`` hands it to ``fit_model``."""

    def fit(
        self,
        data: Processed,
        split: InteractionSplit | None = None,
        *,
        checkpoint_dir: Path | str | None = None,
    ) -> TrainResult:
        """Train (see ``Recommender.fit``); with ``checkpoint_dir``, checkpoint every epoch
        there and resume from what is already there."""
        self._checkpoint_dir = checkpoint_dir
        try:
            return super().fit(data, split)
        finally:
            self._checkpoint_dir = None

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    def config_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self.config))

    def n_parameters(self) -> int:
        return 0 if self._model is None else int(self._model.count_params())

    def device(self) -> str:
        return self._device

    @property
    def keras_model(self) -> keras.Model:
        if self._model is None:
            raise RecsysError(f"the {self.name} model is not trained", fix="call fit() or load()")
        return self._model
