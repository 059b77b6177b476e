"""The preprocess stage: ``preprocess`` -> ``Processed``, and its on-disk format.

``save_processed`` / ``load_processed`` move a ``Processed`` to and from disk through
``recsys.data.io``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.config import PreprocessConfig, from_dict
from recsys.data import io
from recsys.data.preprocess.arrays import frame_equal, require_columns
from recsys.data.preprocess.cleaning import deduplicate, kcore_mask, to_implicit
from recsys.data.preprocess.features import ContentFeatures, build_features
from recsys.data.preprocess.splits import (
    SPLIT_FRAMES,
    InteractionSplit,
    check_split_config,
    split_interactions,
)
from recsys.data.preprocess.vocabulary import Vocabulary, index_interactions
from recsys.data.records import read_versioned_json
from recsys.errors import DataError
from recsys.schema import (
    IMPLICIT,
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    USER_ID,
    Dataset,
    with_id_dtypes,
)

FORMAT_VERSION: Final = 1
META_FILE: Final = "meta.json"


@dataclass(frozen=True, eq=False)
class Processed:
    """Everything the preprocess stage produces; compare with ``equals``."""

    interactions: pd.DataFrame
    """[n, 6] cleaned interactions, ``INDEXED_COLUMNS``, sorted by (user_id, timestamp,
    item_id)."""
    vocab: Vocabulary
    features: ContentFeatures
    split: InteractionSplit
    """The split to train on; for ``kfold`` fold 0."""
    folds: tuple[InteractionSplit, ...]
    """``kfold``: all folds (fold k tests on its k-th share); other methods: empty."""
    stats: dict[str, Any]
    """Row counts of each cleaning step and the final sizes (JSON-ready)."""
    config: PreprocessConfig
    feedback: str
    """``implicit`` once a threshold was applied, else the data set's own."""

    def equals(self, other: object) -> bool:
        return (
            isinstance(other, Processed)
            and frame_equal(self.interactions, other.interactions)
            and self.vocab.equals(other.vocab)
            and self.features.equals(other.features)
            and self.split.equals(other.split)
            and len(self.folds) == len(other.folds)
            and all(a.equals(b) for a, b in zip(self.folds, other.folds, strict=True))
            and (self.stats, self.config, self.feedback)
            == (other.stats, other.config, other.feedback)
        )


def preprocess(
    dataset: Dataset,
    cfg: PreprocessConfig,
    *,
    test_pairs: pd.DataFrame | None = None,
    features_like: ContentFeatures | None = None,
) -> Processed:
    """Deduplicate -> implicit -> k-core -> vocabulary -> features -> split.

    Args:
      dataset: a validated canonical data set.
      cfg: the ``preprocess`` section of ``params.yaml``.
      test_pairs: ``predefined`` split only: the test set's ``(user_id, item_id)`` pairs.
      features_like: encode the content features with these vocabularies instead of fitting
        new ones (``build_features``'s ``like``: an update keeps its champion's encodings).

    Raises:
      ConfigError: a split setting the method cannot honour.
      DataError: nothing left after cleaning, or too few items for the negatives.
    """
    check_split_config(cfg.split, test_pairs=test_pairs)
    require_columns(dataset.interactions, INTERACTION_COLUMNS, "interactions")
    df = dataset.interactions.loc[:, list(INTERACTION_COLUMNS)]
    df = df.astype(with_id_dtypes(INTERACTION_DTYPES, df))
    stats: dict[str, Any] = {"dataset": dataset.name, "rows_in": len(df)}
    df, stats["duplicates_removed"] = deduplicate(df, dataset.feedback)
    feedback = dataset.feedback
    stats["implicit_dropped"] = 0
    if cfg.implicit_threshold is not None:
        before = len(df)
        df = to_implicit(df, cfg.implicit_threshold)
        stats["implicit_dropped"] = before - len(df)
        feedback = IMPLICIT
    users_before, items_before = df[USER_ID].nunique(), df[ITEM_ID].nunique()
    keep, passes = kcore_mask(
        df[USER_ID].to_numpy(),
        df[ITEM_ID].to_numpy(),
        cfg.min_user_interactions,
        cfg.min_item_interactions,
    )
    stats["kcore_removed_rows"] = int(len(df) - keep.sum())
    df = df.iloc[np.flatnonzero(keep)].reset_index(drop=True)
    stats["kcore_removed_users"] = users_before - df[USER_ID].nunique()
    stats["kcore_removed_items"] = items_before - df[ITEM_ID].nunique()
    stats["kcore_passes"] = passes
    if df.empty:
        raise DataError(
            f"no interactions left after cleaning {dataset.name!r}",
            fix="lower preprocess.min_user_interactions / min_item_interactions or "
            "implicit_threshold",
        )
    vocab = Vocabulary.build(df, dataset.items, dataset.users)
    indexed = index_interactions(df, vocab)
    features = build_features(vocab, dataset.items, dataset.users, cfg, like=features_like)
    splits = split_interactions(indexed, cfg.split, test_pairs=test_pairs)
    stats.update(
        n_interactions=len(indexed),
        n_interacting_users=int(indexed[USER_ID].nunique()),
        n_interacting_items=int(indexed[ITEM_ID].nunique()),
        n_users=vocab.n_users,
        n_items=vocab.n_items,
        feedback=feedback,
    )
    return Processed(
        interactions=indexed,
        vocab=vocab,
        features=features,
        split=splits[0],
        folds=tuple(splits) if cfg.split.method == "kfold" else (),
        stats={k: v.item() if isinstance(v, np.generic) else v for k, v in stats.items()},
        config=cfg,
        feedback=feedback,
    )


# --- artifacts ------------------------------------------------------------------------------
_FEATURE_ARRAYS: Final = ("item_genres", "item_tokens", "item_year", "user_features")


def save_processed(p: Processed, out: Path) -> None:
    """Write ``p`` under ``out`` in one atomic directory swap; same input, same bytes.

    Layout::

      meta.json                      format version, config, stats, feedback, split info
      interactions.parquet           cleaned interactions (INDEXED_COLUMNS)
      vocab/users.parquet            user_idx, user_id
      vocab/items.parquet            item_idx, item_id
      features/<array>.npy           item_genres, item_tokens, item_year, user_features
      features/names.json            genre names, token vocabulary, user feature names
      split/{train,val,test}.parquet the split to train on (kfold: fold 0)
      split/negatives.parquet        leave-one-out only (and val_negatives.parquet)
      folds/<k>/...                  kfold only: every fold, same files as split/
    """
    with io.atomic_dir(Path(out)) as tmp:
        io.write_table(p.interactions, tmp / "interactions.parquet")
        users, items = p.vocab.to_frames()
        io.write_table(users, tmp / "vocab" / "users.parquet")
        io.write_table(items, tmp / "vocab" / "items.parquet")
        for name in _FEATURE_ARRAYS:
            io.write_array(getattr(p.features, name), tmp / "features" / f"{name}.npy")
        names = {
            "genre_names": list(p.features.genre_names),
            "tokens": list(p.features.tokens),
            "user_feature_names": list(p.features.user_feature_names),
        }
        io.write_json(names, tmp / "features" / "names.json")
        meta = {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(p.config),
            "stats": p.stats,
            "feedback": p.feedback,
            "split": _write_split(p.split, tmp / "split"),
            "folds": [_write_split(f, tmp / "folds" / str(k)) for k, f in enumerate(p.folds)],
        }
        io.write_json(meta, tmp / META_FILE)


def load_processed(directory: Path) -> Processed:
    """Read a directory written by ``save_processed``."""
    directory = Path(directory)
    meta = read_versioned_json(
        directory / META_FILE,
        FORMAT_VERSION,
        what="processed-data",
        fix="re-run the preprocess stage",
    )
    vocab = Vocabulary.from_frames(
        io.read_table(directory / "vocab" / "users.parquet"),
        io.read_table(directory / "vocab" / "items.parquet"),
    )
    names = io.read_json(directory / "features" / "names.json")
    features = ContentFeatures(
        **{n: io.read_array(directory / "features" / f"{n}.npy") for n in _FEATURE_ARRAYS},
        genre_names=tuple(names["genre_names"]),
        tokens=tuple(names["tokens"]),
        user_feature_names=tuple(names["user_feature_names"]),
    )
    return Processed(
        interactions=io.read_table(directory / "interactions.parquet"),
        vocab=vocab,
        features=features,
        split=_read_split(directory / "split", meta["split"]),
        folds=tuple(
            _read_split(directory / "folds" / str(k), m) for k, m in enumerate(meta["folds"])
        ),
        stats=meta["stats"],
        config=from_dict(PreprocessConfig, meta["config"], f"{directory / META_FILE}:config"),
        feedback=meta["feedback"],
    )


def _write_split(split: InteractionSplit, directory: Path) -> dict[str, Any]:
    written = []
    for name in SPLIT_FRAMES:
        frame = getattr(split, name)
        if frame is not None:
            io.write_table(frame, directory / f"{name}.parquet")
            written.append(name)
    return {"method": split.method, "seed": split.seed, "info": split.info, "tables": written}


def _read_split(directory: Path, meta: dict[str, Any]) -> InteractionSplit:
    tables = {
        name: io.read_table(directory / f"{name}.parquet") if name in meta["tables"] else None
        for name in SPLIT_FRAMES
    }
    for name in ("train", "val", "test"):
        if tables[name] is None:
            raise DataError(f"split table '{name}' missing", where=str(directory))
    return InteractionSplit(
        train=tables["train"],
        val=tables["val"],
        test=tables["test"],
        negatives=tables["negatives"],
        val_negatives=tables["val_negatives"],
        method=meta["method"],
        seed=int(meta["seed"]),
        info=meta["info"],
    )
