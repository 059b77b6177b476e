"""What every Keras-backed recommender shares: its config, its Keras model and its device."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from recsys.errors import RecsysError
from recsys.models.base import Recommender, to_jsonable


class KerasRecommender(Recommender):
    """A ``Recommender`` whose parameters live in one Keras model (``self._model``), built from a
    frozen config dataclass (``self.config``), trained on ``self._device``."""

    config: Any
    _model: keras.Model | None
    _device: str

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
