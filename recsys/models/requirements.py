"""What a model needs from the data, and whether the data has it (issue 17, part 2).

A model class declares ``requires`` (``Recommender.requires``): ``item_content`` for the models
that learn from item text, genres or other item features (content, hybrid), ``ratings`` for
those that predict explicit ratings (AutoRec). ``skip_reason(model, data)`` says why a model
cannot run on ``data`` (None: it can); ``recsys benchmark`` and the pipeline's train stage skip
such a model with that reason instead of training it on nothing.

- Item content: some ``item_*`` feature array of ``data.features`` holds a value (a genre, a
  title or text token, a year, or any item feature column the reader layer adds).
- Ratings: see ``has_ratings``, the one place that decides what counts as explicit feedback.

Cold start (``COLD_USER_ANSWER``): what each registered model answers for a user without
training interactions; ``docs/architecture.md`` has the table, items included.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

import numpy as np

from recsys.data.preprocess.features import PAD_ID, ContentFeatures
from recsys.errors import ConfigError
from recsys.schema import IMPLICIT, RATING

if TYPE_CHECKING:
    from recsys.data.preprocess import Processed
    from recsys.models.base import Recommender

__all__ = [
    "COLD_USER_ANSWER",
    "ITEM_CONTENT",
    "RATINGS",
    "REQUIREMENTS",
    "cold_user_answer",
    "has_item_content",
    "has_ratings",
    "skip_reason",
    "task_reason",
    "unmet_requirements",
]

ITEM_CONTENT: Final = "item_content"
RATINGS: Final = "ratings"
REQUIREMENTS: Final = {
    ITEM_CONTENT: "item content (text, genres or other item features), and the data has "
    "none: give it an items table (--items FILE, or the items file of the data source in "
    "params.yaml), or leave the model out",
    RATINGS: "explicit ratings, and the data holds implicit feedback (counts, clicks or "
    "all-equal ratings): use a ranking model (als, ease, bpr, neumf) for it",
}
"""Requirement -> what the model needs and what to do about it (the skip reason's text)."""


def has_item_content(features: ContentFeatures) -> bool:
    """True when some item has a genre, a title/text token, a year or another item feature.

    Reads every ``item_*`` array of ``ContentFeatures``, so a feature column the reader layer
    adds counts without a change here; padding token ids and NaN years do not count.
    """
    for f in dataclasses.fields(features):
        value = getattr(features, f.name)
        if not f.name.startswith("item_") or not isinstance(value, np.ndarray) or not value.size:
            continue
        if f.name == "item_tokens":
            if (value != PAD_ID).any():
                return True
        elif np.nan_to_num(np.asarray(value, dtype=np.float64), nan=0.0).any():
            return True
    return False


def has_ratings(data: Processed) -> bool:
    """True when ``data`` holds explicit ratings a rating model can learn from.

    SWITCH (issue 17): the feedback kind is ``data.feedback``, which the source sets
    (``Dataset.feedback``: ``CsvConfig.implicit``, a play-count reader) and preprocessing
    turns to ``implicit`` under ``preprocess.implicit_threshold``. Until every reader records
    the kind of its source, this also treats training "ratings" that are all equal (a log of
    clicks read as rating 1) as implicit: a conservative test that never calls counts ratings
    when they are constant, but cannot tell varying play counts from stars by itself.
    """
    if data.feedback == IMPLICIT:
        return False
    ratings = data.split.train[RATING].to_numpy(dtype=np.float64)
    return bool(len(ratings)) and bool(np.ptp(ratings) > 0)


def unmet_requirements(requires: frozenset[str], data: Processed) -> list[str]:
    """The requirements of ``requires`` that ``data`` does not meet, in a stable order.

    Raises:
      ConfigError: a requirement this module does not know (a typo in a model's ``requires``).
    """
    unknown = sorted(set(requires) - set(REQUIREMENTS))
    if unknown:
        raise ConfigError(
            f"unknown model requirement(s) {unknown}", fix=f"use {sorted(REQUIREMENTS)}"
        )
    met = {ITEM_CONTENT: has_item_content(data.features), RATINGS: has_ratings(data)}
    return [r for r in sorted(requires) if not met[r]]


PROTOCOL_TASK: Final = {"topk": "ranking", "loo": "ranking", "rating": "rating"}
"""The task a protocol measures (``Recommender.task``)."""


def task_reason(model: Recommender, protocol: str) -> str | None:
    """Why ``model`` is the wrong kind of model for ``protocol`` (None: it may run): a rating
    model under a ranking protocol. (A ranking model under ``rating`` still runs: its clipped
    scores are the rating protocol's fallback predictions, as before.)"""
    if model.task != "rating" or PROTOCOL_TASK.get(protocol, "rating") == "rating":
        return None
    return (
        f"{model.name} predicts ratings; ranking by predicted rating is not what protocol "
        f"'{protocol}' measures: benchmark it with --protocol rating"
    )


def skip_reason(model: Recommender, data: Processed, protocol: str | None = None) -> str | None:
    """Why ``model`` cannot learn from ``data`` or be scored under ``protocol`` (None: it can),
    e.g. ``"content needs item content (...), and the data has none: ..."``. An instance, not
    a class: an ensemble's requirements are its members' (``Ensemble.requires``)."""
    wrong_task = None if protocol is None else task_reason(model, protocol)
    if wrong_task is not None:
        return wrong_task
    unmet = unmet_requirements(model.requires, data)
    if not unmet:
        return None
    return f"{model.name} needs " + "; and ".join(REQUIREMENTS[r] for r in unmet)


COLD_USER_ANSWER: Final = {
    "mostpop": "popularity order (as for every user)",
    "itemknn": "all scores 0: a tie, broken by item index (no personal signal)",
    "ease": "all scores 0: a tie, broken by item index (no personal signal)",
    "bpr": "its untrained random user vector plus the item biases",
    "als": "popularity order (mostpop's answer)",
    "biased_mf": "global mean plus the item biases",
    "neumf": "its untrained random user embedding",
    "content": "its user tower on an empty history (user attributes only, where given)",
    "hybrid": "its user tower on an empty history, id embedding zeroed",
    "twotower": "its user tower on an empty history, id embedding zeroed",
    "autorec": "each item's mean rating (damped)",
    "multdae": "its decoder on an empty history (a popularity-like order)",
    "ensemble": "the weighted sum of its members' answers",
    "twostage": "its ranker's answer among its retriever's candidates",
}
"""Registered model -> its ranking for a user without training interactions (``recsys
benchmark`` reports it next to the number of such test users; ``docs/architecture.md``)."""


def cold_user_answer(name: str) -> str:
    """``COLD_USER_ANSWER[name]``, or a plain "not documented" for a model outside it."""
    return COLD_USER_ANSWER.get(name, "not documented")
