"""Losses of the training loop beyond Keras' own: a softmax over groups of rows.

``GroupSoftmaxCrossEntropy`` is the sampled-softmax (listwise) loss of implicit-feedback
ranking: the rows of a batch come in groups of ``group`` consecutive rows, one positive and
``group - 1`` sampled negatives of the same user (``PointwiseEpochs(grouped=True)``), and the
loss is the cross-entropy of the softmax over each group's scores. For full-ranking metrics it
is the better-founded objective than per-row binary cross-entropy (it estimates the softmax
over the catalogue that NDCG's ranking implies; Wu et al., "On the Effectiveness of Sampled
Softmax Loss for Item Recommendation", TOIS 2024), and the model stays a pointwise scorer, so
scoring, saving and serving do not change.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from recsys.errors import ConfigError

__all__ = ["GroupSoftmaxCrossEntropy"]


@keras.saving.register_keras_serializable(package="recsys")
class GroupSoftmaxCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy over consecutive groups of ``group`` rows.

    ``y_pred`` are logits ``[b]`` with ``b`` a multiple of ``group``; ``y_true`` marks the
    positive row(s) of each group with 1 (several positives share the target mass equally).
    One loss value per group; Keras averages them over the batch.
    """

    def __init__(self, group: int, name: str = "group_softmax_cross_entropy", **kwargs: Any):
        if isinstance(group, bool) or not isinstance(group, int) or group < 2:
            raise ConfigError(f"a softmax group needs at least 2 rows, got {group!r}")
        super().__init__(name=name, **kwargs)
        self.group = int(group)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = ops.reshape(ops.cast(y_pred, "float32"), (-1, self.group))
        target = ops.reshape(ops.cast(y_true, "float32"), (-1, self.group))
        target = target / ops.maximum(ops.sum(target, axis=1, keepdims=True), 1.0)
        log_softmax = logits - ops.logsumexp(logits, axis=1, keepdims=True)
        return -ops.sum(target * log_softmax, axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "group": self.group}
