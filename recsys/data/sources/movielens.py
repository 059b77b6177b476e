"""MovieLens readers: every GroupLens layout -> canonical ``Dataset``.

Readers convert, they do not judge (see ``recsys.data.sources``).

MovieLens layouts, detected from the files in the directory:

==========  ==========================================  =========  ========  ===============
layout      files                                       separator  encoding  rating scale
==========  ==========================================  =========  ========  ===============
ml-100k     u.data, u.item, u.genre, u.user             tab / |    latin-1*  1..5
ml-1m       ratings.dat, movies.dat, users.dat          ::         latin-1** 1..5
ml-10m      ratings.dat, movies.dat, tags.dat           ::         utf-8**   0.5..5 (halves)
ml-20m +    ratings.csv, movies.csv, tags.csv (header)  ,          utf-8     0.5..5 (halves)
==========  ==========================================  =========  ========  ===============

(``ml-20m +`` is ml-20m, ml-25m, ml-32m, ml-latest and ml-latest-small.) Only the ratings file is
required; the item and user files are read when present, tags only together with the movies
file (they become the items' ``text``). *``u.data`` holds only digits; the text files are latin-1.
**The text files are read as UTF-8 when they decode as UTF-8, else as latin-1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from recsys.data import io
from recsys.data.sources.ids import check_dataset_ids
from recsys.data.sources.movielens_files import (
    read_csv_movies,
    read_dat_movies,
    read_dat_users,
    read_ml100k_items,
    read_ml100k_users,
    read_ml_csv_ratings,
    read_ratings_file,
)
from recsys.errors import DataError, location
from recsys.schema import Dataset

STAR_SCALE: Final = (1.0, 5.0)
"""ml-100k and ml-1m: whole stars."""
HALF_STAR_SCALE: Final = (0.5, 5.0)
"""ml-10m and later: half stars."""

_LAYOUT_FILES: Final[Mapping[str, tuple[str, str | None, str | None, str | None]]] = {
    "ml-100k": ("u.data", "u.item", "u.user", None),
    "ml-1m": ("ratings.dat", "movies.dat", "users.dat", "tags.dat"),
    "ml-10m": ("ratings.dat", "movies.dat", None, "tags.dat"),
    "ml-csv": ("ratings.csv", "movies.csv", None, "tags.csv"),
}
"""Layout -> its (ratings, items, users, tags) file names; tags are read with the items."""


# --- MovieLens ------------------------------------------------------------------------------
def read_movielens(path: Path | str) -> Dataset:
    """Read a MovieLens directory in its original GroupLens layout (see the module docstring).

    ``path`` is the extracted directory (a directory holding exactly one such directory, or the
    ratings file itself, also works). Items get ``title``, ``genres`` (pipe-separated, ``""`` for
    none) and, where the release has tags, ``text``: the item's distinct tags, lower-cased and
    space-joined in first-use order. Users exist for ml-100k and ml-1m only. Each file is read
    by the function that reads it on its own (``recsys.data.sources.movielens_files``).
    """
    layout, directory = detect_movielens_layout(path)
    ratings_name, items_name, users_name, tags_name = _LAYOUT_FILES[layout]
    files = {"interactions": directory / ratings_name}
    if layout == "ml-100k":
        interactions = read_ratings_file(files["interactions"])
    elif layout == "ml-csv":
        interactions = read_ml_csv_ratings(files["interactions"])
    else:
        interactions = read_ratings_file(files["interactions"], sep="::")
    io.require_rows(interactions, files["interactions"])
    items = users = None
    if items_name is not None and (directory / items_name).is_file():
        files["items"] = directory / items_name
        read_items = {"ml-100k": read_ml100k_items, "ml-csv": read_csv_movies}
        items = read_items.get(layout, read_dat_movies)(files["items"])
        if tags_name is not None and (directory / tags_name).is_file():
            files["tags"] = directory / tags_name
    if users_name is not None and (directory / users_name).is_file():
        files["users"] = directory / users_name
        users = (read_ml100k_users if layout == "ml-100k" else read_dat_users)(files["users"])
    name = layout
    if layout == "ml-csv":
        name = directory.name if directory.name.startswith("ml-") else "movielens"
    scale = STAR_SCALE if layout in ("ml-100k", "ml-1m") else HALF_STAR_SCALE
    dataset = Dataset(
        interactions,
        items,
        users,
        name=name,
        rating_scale=scale,
        source_files={table: str(p) for table, p in files.items()},
    )  # every MovieLens release holds star ratings: Dataset's default, explicit feedback
    check_dataset_ids(dataset)
    return dataset


def detect_movielens_layout(path: Path | str) -> tuple[str, Path]:
    """``(layout, directory)``: layout is ``ml-100k``, ``ml-1m``, ``ml-10m`` or ``ml-csv``.

    Rules, first match wins: ``u.data`` -> ml-100k; ``ratings.dat`` with ``users.dat`` -> ml-1m;
    ``ratings.dat`` alone -> ml-10m; ``ratings.csv`` -> ml-csv (ml-20m, ml-25m, ml-latest...).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            "MovieLens directory not found",
            where=location(path),
            fix="download it (recsys data download --dataset ml-100k --dest data/raw), or set "
            "data.path / --path to where the files are",
        )
    if path.is_file():
        if path.name in ("u.data", "ratings.dat", "ratings.csv"):
            path = path.parent
        else:
            raise DataError(
                "expected a MovieLens directory, got a file",
                where=location(path),
                fix="point data.path at the extracted directory; read split files such as "
                "u1.base with read_ratings_file",
            )
    layout = _layout_of(path)
    if layout is not None:
        return layout, path
    nested = [d for d in sorted(path.iterdir()) if d.is_dir() and _layout_of(d) is not None]
    if len(nested) == 1:
        return str(_layout_of(nested[0])), nested[0]
    found = sorted(p.name for p in path.iterdir())
    raise DataError(
        "no MovieLens ratings file in directory; expected u.data (ml-100k), ratings.dat (ml-1m, "
        f"ml-10m) or ratings.csv (ml-20m, ml-25m, ml-latest); found: {found[:12]}",
        where=location(path),
        fix="point data.path at the directory extracted from the GroupLens archive",
    )


def _layout_of(directory: Path) -> str | None:
    if (directory / "u.data").is_file():
        return "ml-100k"
    if (directory / "ratings.dat").is_file():
        return "ml-1m" if (directory / "users.dat").is_file() else "ml-10m"
    if (directory / "ratings.csv").is_file():
        return "ml-csv"
    return None
