"""Source readers: MovieLens (every GroupLens layout) and generic logs -> canonical ``Dataset``.

Readers convert, they do not judge: NaN or out-of-range ratings, duplicates, future timestamps and
ids missing from the item table pass through unchanged, for the validation stage to report. What
they refuse is input they cannot convert at all (a missing file, a wrong separator or encoding, a
malformed line, a non-integer id, a missing column), with a ``DataError`` that names the file, the
column and the line. All parsing is vectorized (``recsys.data.io.read_delimited``); the slow
line-by-line pass runs only to locate an error.

==============  ==============================================================================
movielens       ``read_movielens`` (layouts ml-100k ... ml-latest): a directory
movielens_files one MovieLens file: ``read_ratings_file`` (u.data, splits, ratings.dat),
                ``read_ml_csv_ratings``, ``read_ml100k_items`` / ``read_dat_movies`` /
                ``read_csv_movies``, ``read_ml100k_users`` / ``read_dat_users``
csv_source      ``read_csv_source``: CSV / TSV / Parquet logs with a column mapping
formats         one file in any format (detected or named): ``read_log_file``,
                ``read_items_file``, ``read_users_file``, ``read_file_source``
ids             the id contract: ``canonical_ids`` (int64 or verbatim text), kind checks
download        ``download_movielens``: fetch and verify an official archive
==============  ==============================================================================

``load_source`` picks the reader ``DataConfig.source`` names (``csv`` with ``data.format``:
``formats.read_file_source``). This package re-exports the
readers' public names, so ``from recsys.data.sources import X`` keeps working.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from recsys.config import DataConfig, SyntheticConfig
from recsys.data.sources import formats
from recsys.data.sources.csv_source import read_csv_source
from recsys.data.sources.download import MOVIELENS_MD5, MOVIELENS_URL, download_movielens
from recsys.data.sources.ids import canonical_ids, check_dataset_ids
from recsys.data.sources.movielens import (
    HALF_STAR_SCALE,
    STAR_SCALE,
    detect_movielens_layout,
    read_movielens,
)
from recsys.data.sources.movielens_files import (
    AGE_GROUP,
    IMDB_URL,
    ML1M_AGE_GROUPS,
    ML1M_OCCUPATIONS,
    ML100K_GENRES,
    NO_GENRES,
    RELEASE_DATE,
    read_csv_movies,
    read_dat_movies,
    read_dat_users,
    read_ml100k_items,
    read_ml100k_users,
    read_ml_csv_ratings,
    read_ratings_file,
)
from recsys.errors import ConfigError
from recsys.schema import Dataset

__all__ = [
    "AGE_GROUP",
    "HALF_STAR_SCALE",
    "IMDB_URL",
    "ML1M_AGE_GROUPS",
    "ML1M_OCCUPATIONS",
    "ML100K_GENRES",
    "MOVIELENS_MD5",
    "MOVIELENS_URL",
    "NO_GENRES",
    "RELEASE_DATE",
    "STAR_SCALE",
    "SyntheticGenerator",
    "canonical_ids",
    "check_dataset_ids",
    "detect_movielens_layout",
    "download_movielens",
    "load_source",
    "read_csv_movies",
    "read_csv_source",
    "read_dat_movies",
    "read_dat_users",
    "read_ml100k_items",
    "read_ml100k_users",
    "read_ml_csv_ratings",
    "read_movielens",
    "read_ratings_file",
    "read_source",
]

SyntheticGenerator = Callable[[SyntheticConfig], Dataset]


# --- entry point ----------------------------------------------------------------------------
def load_source(
    cfg: DataConfig,
    path: Path | str | None = None,
    *,
    synthetic_generate: SyntheticGenerator | None = None,
) -> Dataset:
    """Read the configured source (``cfg.source``) into a canonical ``Dataset``, with every
    batch ``recsys update`` accepted (``cfg.batches``, ``recsys.data.sources.batches``)
    appended.

    Args: as ``read_source``.
    """
    from recsys.data.sources.batches import append_batches

    dataset = read_source(cfg, path, synthetic_generate=synthetic_generate)
    return append_batches(dataset, cfg.batches) if cfg.batches else dataset


def read_source(
    cfg: DataConfig,
    path: Path | str | None = None,
    *,
    synthetic_generate: SyntheticGenerator | None = None,
) -> Dataset:
    """Read the configured source (``cfg.source``) into a canonical ``Dataset``, without the
    accepted batches.

    Args:
      cfg: the ``data`` section of ``params.yaml``.
      path: overrides ``cfg.path`` (a MovieLens directory, or the interaction file of a ``csv``
        source); unused for ``synthetic``.
      synthetic_generate: the generator for ``synthetic`` (default
        ``recsys.data.synthetic.generate``); tests pass a stand-in.
    """
    if cfg.source == "synthetic":
        if synthetic_generate is None:
            synthetic: object = importlib.import_module("recsys.data.synthetic")
            synthetic_generate = synthetic.generate  # type: ignore[attr-defined]
        return synthetic_generate(cfg.synthetic)
    chosen = path if path is not None else cfg.path
    if chosen is None or str(chosen) == "":
        example = "data/raw/ml-100k" if cfg.source == "movielens" else "data/raw/events.csv"
        raise ConfigError(
            f"no input path for data source '{cfg.source}'",
            where="params.yaml: data.path",
            fix=f"set data.path (e.g. {example}) or pass --path",
        )
    if cfg.source == "movielens":
        return read_movielens(Path(chosen))
    if cfg.source == "csv" and cfg.format is not None:
        formats.resolve_format(None if cfg.format == "auto" else cfg.format)
        return formats.read_file_source(Path(chosen), cfg.format, cfg.csv)
    if cfg.source == "csv":
        return read_csv_source(Path(chosen), cfg.csv)
    raise ConfigError(
        f"unknown data source '{cfg.source}'",
        where="params.yaml: data.source",
        fix="use one of: synthetic, movielens, csv",
    )
