"""The embedded default data set: a seeded generator with a known latent structure.

``generate(cfg)`` returns a canonical ``Dataset`` (see ``recsys.schema``) that looks like
MovieLens - explicit 1-5 ratings, a long popularity tail, heavy-tailed user activity, genres,
titles and demographics - but whose generating process is known, so that a personalised model
measurably beats popularity on it (a broken one does not); ``latent_structure(cfg)`` returns the
true parameters. Everything is drawn from ``numpy.random.Generator`` streams derived from
``cfg.seed`` alone, independently of the number of threads: the same config gives the same
tables on a given platform (float32 ``log`` and dot products may round differently on another
CPU or numpy build, which can flip a handful of near-ties).

Sizes
    ``n_interactions`` (N) is exact. ``n_users`` (U) and ``n_items`` (I) default to about N/50
    and N/100. Below N = 50 000 that would fill more than ``MAX_DENSITY`` (10 %) of the
    user-item matrix, so both are scaled up by the same factor to keep it at 10 %; they are
    clamped to at least 20 users and 50 items (N = 2 000: 200 users, 100 items; N = 1e5: 2 000
    users, 1 000 items). Ids are ``1..U`` and ``1..I``.

Items
    * Genres: ``cfg.n_genres`` named genres (MovieLens names; ``Genre19``... beyond 18) with a
      mild Zipf prior (``p_g`` proportional to ``(g + 1) ** -0.8``, Drama and Comedy
      commonest). Each item has 1, 2 or 3 distinct genres (probabilities 0.50/0.33/0.17, at most
      ``n_genres``), sampled without replacement from that prior. ``m_i`` is the item's genre
      vector with ``1 / k_i`` on each of its ``k_i`` genres.
    * Latent factors: each genre has a centroid ``c_g ~ N(0, I_F)`` (F = ``cfg.n_factors``);
      ``v_i = 0.6 * sum_{g in i} c_g / sqrt(k_i) + 0.8 * e_i`` with ``e_i ~ N(0, I_F)``, so
      ``v_i`` has unit variance per dimension and its genres explain 36 % of it.
    * Popularity: item ranks are a random permutation of ``0..I-1`` (ids carry no signal) and
      ``log p_i = -cfg.popularity_exponent * log(1 + rank_i)`` (Zipf).
    * Title: two different words, each from the word list of one of the item's genres (chosen
      uniformly), then a unique pseudo-word of >= 3 consonant-vowel syllables, e.g.
      ``"Galaxy Orbit Vozubi"``: title tokens carry genre signal plus an item identity.
    * Text: the pole words (``"gritty"``/``"whimsical"``, ...) of the two factor dimensions with
      the largest ``|v_i|``, e.g. ``"fast-paced dark"``: a coarse view of the latent factors.

Users
    * Demographics: gender M/F (0.71/0.29); age from the seven MovieLens-1M age groups (uniform
      within the group); occupation from the 21 MovieLens-100K occupations (under-18s are
      students, 70 % of over-65s retired); a random 5-digit zip code (no signal).
    * Genre affinity: ``a_u = A[age_group_u] + B[gender_u] + N(0, 0.7^2 I_G)`` with demographic
      shift tables ``A ~ N(0, 0.5^2)`` (7 x G) and ``B ~ N(0, 0.5^2)`` (2 x G): users of one
      age group and gender share part of their genre taste.
    * Latent factors ``u_u ~ N(0, I_F)``; rating leniency ``b_u ~ N(0, 0.3^2)``.
    * Activity: ``n_u = 5 + (share of N - 5U)`` proportional to ``w_u ~ LogNormal(0, 1)``,
      capped at I (water filling) and rounded by largest remainder: ``sum n_u = N`` exactly
      and every user has at least 5 interactions (N = 1e5: median 32, max about 700).

Which items a user interacts with
    ``affinity(u, i) = 2 u_u . v_i / sqrt(F) + a_u . m_i + log p_i``; over all pairs the
    personal part has a standard deviation of about 2.2, ``log p`` about 1.0. User u takes
    ``n_u`` distinct items, sampled without replacement with probability proportional to
    ``exp(affinity)`` (successive draws of a Plackett-Luce model), by the Gumbel-top-k trick:
    the ``n_u`` largest keys ``affinity(u, i) + G_ui``, ``G_ui ~ Gumbel(0, 1)``, in decreasing
    order of the key. Users are processed in chunks of about ``CHUNK_ELEMENTS`` user-item keys,
    each chunk with its own random stream, in parallel threads.

Timestamps
    Each user is active in a window of length ``LogNormal(log(120 days), 1.2)`` (clipped to
    ``[1 day, end - start]``) placed uniformly in ``[cfg.start, cfg.end)``. The user's
    ``n_u`` timestamps are sorted uniform draws in the window, made strictly increasing, and
    given to the items in Plackett-Luce order: the item drawn first is consumed first, so
    later interactions are on average less popular, less well matched and rated lower (users
    work down their preference list; rating-position correlation about -0.2, MovieLens 100K
    about -0.1). Within a user, timestamps are distinct.

Ratings
    ``z = 2 u_u . v_i / sqrt(F) + a_u . m_i + 0.3 log p_i + b_u + cfg.noise * N(0, 1)``,
    mapped to 1..5 at the global quantiles of ``z`` so that the histogram equals MovieLens
    100K's (6.1 / 11.4 / 27.2 / 34.2 / 21.2 %, mean 3.53): a rating reflects how well the item
    matches the user, how popular it is and how lenient the user is.

What it gives (seed 20261128, random 80/20 split per user, precision@10 excluding seen items)
    N = 1e5: most-popular 0.14, item-kNN (cosine) 0.22, EASE 0.25, the true affinity 0.35;
    the top 10 % of items hold 37 % of the interactions (MovieLens 100K: 43 %).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from recsys.config import SyntheticConfig
from recsys.errors import ConfigError
from recsys.schema import (
    AGE,
    EXPLICIT,
    GENDER,
    GENRE_SEPARATOR,
    GENRES,
    INTERACTION_DTYPES,
    ITEM_ID,
    OCCUPATION,
    RATING,
    TEXT,
    TIMESTAMP,
    TITLE,
    USER_ID,
    ZIP_CODE,
    Dataset,
)

__all__ = [
    "GENRE_NAMES",
    "GENRE_WORDS",
    "LatentStructure",
    "generate",
    "latent_structure",
    "resolve_sizes",
]

DATASET_NAME: Final = "synthetic"
MIN_INTERACTIONS: Final = 1_000
MAX_INTERACTIONS: Final = 10_000_000
MIN_PER_USER: Final = 5
"""Every user has at least this many interactions (the default k-core threshold)."""
INTERACTIONS_PER_USER: Final = 50
INTERACTIONS_PER_ITEM: Final = 100
MIN_USERS: Final = 20
MIN_ITEMS: Final = 50
MAX_DENSITY: Final = 0.1
"""Derived sizes keep at most this share of the user-item matrix filled."""
MAX_PAIRS: Final = 25_000_000_000
"""Every user-item pair is scored once: about 4 ns of CPU each on two threads, so the 2e10 pairs
of N = 1e7 take about two minutes on two cores."""
CHUNK_ELEMENTS: Final = 1 << 19
"""User-item scores per chunk (2 MiB of float32): fits in L2 cache. Part of the generator's
definition: changing it changes the random streams, hence the data."""
THRESHOLD_SAMPLE: Final = 8
"""Each row's top-k threshold is estimated from 1/8 of its columns (see _threshold_estimate)."""
DAY: Final = 86_400

# --- the latent structure's constants (documented in the module docstring) -----------------
FACTOR_WEIGHT: Final = 2.0
GENRE_WEIGHT: Final = 1.0
GENRE_PRIOR_EXPONENT: Final = 0.8
GENRES_PER_ITEM_P: Final = (0.50, 0.33, 0.17)
GENRE_SHARE_OF_ITEM_FACTOR: Final = 0.6
AGE_SHIFT_SD: Final = 0.5
GENDER_SHIFT_SD: Final = 0.5
USER_GENRE_SD: Final = 0.7
LENIENCY_SD: Final = 0.3
ACTIVITY_SIGMA: Final = 1.0
WINDOW_MEDIAN_DAYS: Final = 120.0
WINDOW_SIGMA: Final = 1.2
RATING_POPULARITY_WEIGHT: Final = 0.3
RATING_SHARES: Final = (0.0611, 0.1137, 0.2715, 0.3418, 0.2119)
"""MovieLens 100K's share of ratings 1..5."""

GENRE_NAMES: Final = (
    "Drama",
    "Comedy",
    "Action",
    "Thriller",
    "Romance",
    "Adventure",
    "Crime",
    "Sci-Fi",
    "Horror",
    "Children",
    "War",
    "Mystery",
    "Musical",
    "Animation",
    "Fantasy",
    "Western",
    "Film-Noir",
    "Documentary",
)
"""Named genres, commonest first (MovieLens 100K order of frequency, roughly)."""

GENRE_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "Drama": ("Silence", "Letters", "Winter", "Promise", "Brothers", "Daughter", "Harbor", "Mercy"),
    "Comedy": (
        "Wedding",
        "Pickle",
        "Roommates",
        "Vacation",
        "Neighbors",
        "Blunder",
        "Mixup",
        "Shenanigans",
    ),
    "Action": (
        "Bullet",
        "Fury",
        "Strike",
        "Vengeance",
        "Protocol",
        "Firepower",
        "Showdown",
        "Rampage",
    ),
    "Thriller": (
        "Conspiracy",
        "Witness",
        "Pursuit",
        "Deadline",
        "Hostage",
        "Paranoia",
        "Trap",
        "Stranger",
    ),
    "Romance": ("Kiss", "Heart", "Summer", "Love", "Paris", "Valentine", "Sweetheart", "Embrace"),
    "Adventure": (
        "Quest",
        "Treasure",
        "Island",
        "Expedition",
        "Voyage",
        "Jungle",
        "Map",
        "Compass",
    ),
    "Crime": ("Heist", "Mob", "Gangster", "Detective", "Alibi", "Racket", "Smuggler", "Verdict"),
    "Sci-Fi": ("Galaxy", "Android", "Starship", "Quantum", "Asteroid", "Cyborg", "Orbit", "Colony"),
    "Horror": ("Blood", "Haunting", "Scream", "Grave", "Curse", "Possession", "Nightmare", "Crypt"),
    "Children": (
        "Puppy",
        "Bunny",
        "Birthday",
        "Toybox",
        "Dragonfly",
        "Lollipop",
        "Playground",
        "Teddy",
    ),
    "War": (
        "Battalion",
        "Trenches",
        "Platoon",
        "Frontline",
        "Battle",
        "Sniper",
        "Submarine",
        "Armistice",
    ),
    "Mystery": ("Clue", "Riddle", "Secret", "Enigma", "Puzzle", "Cipher", "Manor", "Disappearance"),
    "Musical": ("Melody", "Song", "Dance", "Rhythm", "Chorus", "Broadway", "Overture", "Ballet"),
    "Animation": ("Cartoon", "Toon", "Sketch", "Pixel", "Robot", "Kingdom", "Critter", "Doodle"),
    "Fantasy": ("Wizard", "Dragon", "Sorcerer", "Elf", "Enchantment", "Spell", "Realm", "Prophecy"),
    "Western": (
        "Outlaw",
        "Saloon",
        "Sheriff",
        "Rodeo",
        "Frontier",
        "Canyon",
        "Stagecoach",
        "Gunslinger",
    ),
    "Film-Noir": (
        "Shadow",
        "Dame",
        "Fog",
        "Midnight",
        "Cigarette",
        "Rain",
        "Nightclub",
        "Double-Cross",
    ),
    "Documentary": (
        "Planet",
        "Truth",
        "Story",
        "Inside",
        "Portrait",
        "Archive",
        "Chronicle",
        "Journey",
    ),
}
"""Title words per named genre; no word belongs to two genres."""
WORDS_PER_GENRE: Final = 8

FACTOR_POLES: Final = (
    ("gritty", "whimsical"),
    ("slow-burn", "fast-paced"),
    ("cerebral", "visceral"),
    ("dark", "uplifting"),
    ("epic", "intimate"),
    ("classic", "modern"),
    ("realistic", "surreal"),
    ("violent", "gentle"),
    ("satirical", "earnest"),
    ("quirky", "conventional"),
    ("stylish", "raw"),
    ("ensemble", "solo"),
    ("urban", "rural"),
    ("nostalgic", "futuristic"),
    ("tense", "relaxed"),
    ("bleak", "hopeful"),
)
"""(negative, positive) tag of latent dimension f; ``factor17-low``... beyond 16."""

TOKEN_CONSONANTS: Final = "bdgklmnprstvz"
TOKEN_VOWELS: Final = "aeiou"
TOKEN_MIN_SYLLABLES: Final = 3

AGE_GROUPS: Final = ((7, 17), (18, 24), (25, 34), (35, 44), (45, 49), (50, 55), (56, 73))
AGE_GROUP_P: Final = (0.037, 0.183, 0.347, 0.198, 0.091, 0.082, 0.062)
"""MovieLens 1M's shares of its age groups."""
GENDERS: Final = ("M", "F")
GENDER_P: Final = (0.71, 0.29)
OCCUPATIONS: Final = (
    ("student", 0.210),
    ("other", 0.112),
    ("educator", 0.101),
    ("administrator", 0.084),
    ("engineer", 0.071),
    ("programmer", 0.070),
    ("librarian", 0.054),
    ("writer", 0.048),
    ("executive", 0.034),
    ("scientist", 0.033),
    ("artist", 0.030),
    ("technician", 0.029),
    ("marketing", 0.028),
    ("entertainment", 0.019),
    ("healthcare", 0.017),
    ("retired", 0.015),
    ("lawyer", 0.013),
    ("salesman", 0.013),
    ("none", 0.010),
    ("homemaker", 0.008),
    ("doctor", 0.007),
)


@dataclass(frozen=True)
class LatentStructure:
    """The true parameters behind one synthetic data set (row i is user/item id i + 1).

    Attributes:
      user_factors: [n_users, n_factors] float32 ``u_u``.
      item_factors: [n_items, n_factors] float32 ``v_i``.
      user_genre_affinity: [n_users, n_genres] float32 ``a_u``.
      item_genres: [n_items, n_genres] float32 ``m_i`` (``1 / k_i`` on the item's genres).
      log_popularity: [n_items] float32 ``log p_i`` (0 for the most popular item).
      leniency: [n_users] float32 ``b_u``.
      activity: [n_users] int64 ``n_u``, interactions per user; sums to ``n_interactions``.
      window_start: [n_users] int64 unix seconds, start of the user's activity window.
      window_length: [n_users] int64 seconds, at least ``n_u``.
      age: [n_users] int64.
      age_group: [n_users] int64 index into ``AGE_GROUPS``.
      gender: [n_users] int64 index into ``GENDERS``.
      occupation: [n_users] int64 index into ``OCCUPATIONS``.
      genre_names: [n_genres] genre names.
      genre_words: [n_genres, WORDS_PER_GENRE] title words per genre.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_genre_affinity: np.ndarray
    item_genres: np.ndarray
    log_popularity: np.ndarray
    leniency: np.ndarray
    activity: np.ndarray
    window_start: np.ndarray
    window_length: np.ndarray
    age: np.ndarray
    age_group: np.ndarray
    gender: np.ndarray
    occupation: np.ndarray
    genre_names: tuple[str, ...]
    genre_words: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``2 u . v / sqrt(F) + a_u . m_i + log p_i`` for aligned index arrays (0-based).

        Args:
          users: [n] user indices (user id - 1).
          items: [n] item indices (item id - 1).

        Returns:
          [n] float32 affinities; ``exp`` of them is proportional to the sampling weight.
        """
        personal = _user_side(self)[users] * _item_side(self)[items]
        return personal.sum(axis=1, dtype=np.float32)


def resolve_sizes(cfg: SyntheticConfig) -> tuple[int, int]:
    """``(n_users, n_items)`` for ``cfg``: the configured values, or ones derived from N.

    Raises:
      ConfigError: the config is invalid or ``n_interactions`` cannot fit the sizes.
    """
    _check_scalars(cfg)
    n = cfg.n_interactions
    users, items = cfg.n_users, cfg.n_items
    if users is None and items is None:
        u0, i0 = n / INTERACTIONS_PER_USER, n / INTERACTIONS_PER_ITEM
        scale = max(1.0, math.sqrt(n / (MAX_DENSITY * u0 * i0)))
        users = max(MIN_USERS, round(u0 * scale))
        items = max(MIN_ITEMS, round(i0 * scale))
    elif users is None:
        assert items is not None
        wanted = max(
            MIN_USERS, round(n / INTERACTIONS_PER_USER), math.ceil(n / MAX_DENSITY / items)
        )
        users = min(wanted, n // MIN_PER_USER)
    elif items is None:
        items = max(MIN_ITEMS, round(n / INTERACTIONS_PER_ITEM), math.ceil(n / MAX_DENSITY / users))
    where = "data.synthetic"
    if users * MIN_PER_USER > n:
        raise ConfigError(
            f"n_interactions={n} is too few for {users} users with at least {MIN_PER_USER} each",
            where=f"{where}.n_users",
            fix=f"use at most {n // MIN_PER_USER} users or leave n_users unset",
        )
    if users * items < n:
        raise ConfigError(
            f"n_interactions={n} exceeds the {users} x {items} distinct user-item pairs",
            where=f"{where}.n_interactions",
            fix="lower n_interactions or raise n_users / n_items (or leave them unset)",
        )
    if users * items > MAX_PAIRS:
        raise ConfigError(
            f"{users} users x {items} items = {users * items:.2e} pairs; the generator scores "
            f"every pair and allows at most {MAX_PAIRS:.1e}",
            where=where,
            fix="use fewer users or items (or leave them unset)",
        )
    return users, items


def latent_structure(cfg: SyntheticConfig) -> LatentStructure:
    """Draw the latent parameters of the data set ``generate(cfg)`` returns.

    Raises:
      ConfigError: the config is invalid.
    """
    n_users, n_items = resolve_sizes(cfg)
    start, end = _time_range(cfg)
    rng = np.random.Generator(np.random.PCG64(_seed_sequences(cfg.seed)[0]))
    n_genres, n_factors = cfg.n_genres, cfg.n_factors

    # Items: genres (1-3, without replacement from a Zipf prior via Gumbel-top-k).
    log_prior = -GENRE_PRIOR_EXPONENT * np.log1p(np.arange(n_genres))
    k = 1 + rng.choice(len(GENRES_PER_ITEM_P), size=n_items, p=GENRES_PER_ITEM_P)
    k = np.minimum(k, n_genres)
    genre_keys = log_prior + rng.gumbel(size=(n_items, n_genres))
    ranked = np.argsort(-genre_keys, axis=1, kind="stable")[:, : len(GENRES_PER_ITEM_P)]
    has = np.zeros((n_items, n_genres), dtype=bool)
    for j in range(ranked.shape[1]):
        rows = np.flatnonzero(k > j)
        has[rows, ranked[rows, j]] = True
    item_genres = (has / k[:, None]).astype(np.float32)

    centroids = rng.standard_normal((n_genres, n_factors))
    genre_part = (has @ centroids) / np.sqrt(k)[:, None]
    rho = GENRE_SHARE_OF_ITEM_FACTOR
    item_factors = rho * genre_part + math.sqrt(1 - rho**2) * rng.standard_normal(
        (n_items, n_factors)
    )
    rank = rng.permutation(n_items)
    log_popularity = -cfg.popularity_exponent * np.log1p(rank)

    # Users: demographics, genre affinity shifted by them, factors, leniency, activity.
    gender = rng.choice(len(GENDERS), size=n_users, p=GENDER_P)
    age_group = rng.choice(len(AGE_GROUPS), size=n_users, p=AGE_GROUP_P)
    lo = np.array([g[0] for g in AGE_GROUPS])[age_group]
    hi = np.array([g[1] for g in AGE_GROUPS])[age_group]
    age = rng.integers(lo, hi + 1)
    occ_p = np.array([p for _, p in OCCUPATIONS])
    occupation = rng.choice(len(OCCUPATIONS), size=n_users, p=occ_p / occ_p.sum())
    names = [name for name, _ in OCCUPATIONS]
    occupation[age < 18] = names.index("student")
    retired = (age >= 65) & (rng.random(n_users) < 0.7)
    occupation[retired] = names.index("retired")

    age_shift = rng.normal(0.0, AGE_SHIFT_SD, (len(AGE_GROUPS), n_genres))
    gender_shift = rng.normal(0.0, GENDER_SHIFT_SD, (len(GENDERS), n_genres))
    user_genre_affinity = (
        age_shift[age_group]
        + gender_shift[gender]
        + rng.normal(0.0, USER_GENRE_SD, (n_users, n_genres))
    )
    user_factors = rng.standard_normal((n_users, n_factors))
    leniency = rng.normal(0.0, LENIENCY_SD, n_users)
    weights = rng.lognormal(0.0, ACTIVITY_SIGMA, n_users)
    activity = _allocate(weights, cfg.n_interactions, MIN_PER_USER, n_items)

    span = end - start
    if int(activity.max()) > span:
        raise ConfigError(
            f"a user with {int(activity.max())} interactions needs as many distinct seconds, "
            f"but {cfg.start}..{cfg.end} has only {span}",
            where="data.synthetic.end",
            fix="widen the time range",
        )
    length = np.exp(rng.normal(math.log(WINDOW_MEDIAN_DAYS * DAY), WINDOW_SIGMA, n_users))
    length = np.clip(np.rint(length), DAY, span).astype(np.int64)
    length = np.maximum(length, activity)
    window_start = start + (rng.random(n_users) * (span - length + 1)).astype(np.int64)

    return LatentStructure(
        user_factors=user_factors.astype(np.float32),
        item_factors=item_factors.astype(np.float32),
        user_genre_affinity=user_genre_affinity.astype(np.float32),
        item_genres=item_genres,
        log_popularity=log_popularity.astype(np.float32),
        leniency=leniency.astype(np.float32),
        activity=activity,
        window_start=window_start,
        window_length=length,
        age=age.astype(np.int64),
        age_group=age_group.astype(np.int64),
        gender=gender.astype(np.int64),
        occupation=occupation.astype(np.int64),
        genre_names=_genre_names(n_genres),
        genre_words=_genre_words(n_genres),
    )


def generate(cfg: SyntheticConfig, *, workers: int | None = None) -> Dataset:
    """The synthetic data set for ``cfg`` in canonical form (see the module docstring).

    Args:
      cfg: sizes, structure and seed.
      workers: threads that sample interactions; None uses every available CPU. The result
        does not depend on it.

    Returns:
      ``Dataset(name="synthetic", feedback="explicit", rating_scale=(1.0, 5.0))`` with
      ``interactions`` [n_interactions rows] sorted by user then time, ``items`` (item_id,
      title, genres, text) and ``users`` (user_id, age, gender, occupation, zip_code).

    Raises:
      ConfigError: the config is invalid.
    """
    latent = latent_structure(cfg)
    users, items, score, timestamp = _sample_interactions(cfg, latent, workers)
    return Dataset(
        interactions=pd.DataFrame(
            {
                USER_ID: users,
                ITEM_ID: items,
                RATING: _ratings(score),
                TIMESTAMP: timestamp,
            }
        ).astype(INTERACTION_DTYPES),
        items=_items_table(cfg, latent),
        users=_users_table(cfg, latent),
        name=DATASET_NAME,
        feedback=EXPLICIT,
        rating_scale=(1.0, 5.0),
    )


# --- interactions ---------------------------------------------------------------------------
def _sample_interactions(
    cfg: SyntheticConfig, latent: LatentStructure, workers: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gumbel-top-k sampling of every user's items, chunk by chunk, in threads.

    Returns:
      user ids, item ids, rating scores ``z`` and timestamps, each [n_interactions], sorted by
      user id and, within a user, by time.
    """
    n_users, n_items = latent.n_users, latent.n_items
    activity = latent.activity
    offsets = np.concatenate([[0], np.cumsum(activity)])
    total = int(offsets[-1])
    out_items = np.empty(total, dtype=np.int64)
    out_score = np.empty(total, dtype=np.float32)
    out_time = np.empty(total, dtype=np.int64)

    user_side = _user_side(latent)  # [U, D]
    item_side = _item_side(latent)  # [I, D]
    item_side_t = np.ascontiguousarray(item_side.T)  # [D, I]
    rows_per_chunk = max(1, CHUNK_ELEMENTS // n_items)
    order = np.argsort(activity, kind="stable")  # similar n_u share a chunk: less padding
    chunks = [order[i : i + rows_per_chunk] for i in range(0, n_users, rows_per_chunk)]
    seeds = _seed_sequences(cfg.seed)[1].spawn(len(chunks))
    local = threading.local()

    def run(job: int) -> None:
        users = chunks[job]
        rng = np.random.Generator(np.random.PCG64(seeds[job]))
        if getattr(local, "keys", None) is None:
            local.keys = np.empty((rows_per_chunk, n_items), dtype=np.float32)
            local.work = np.empty((rows_per_chunk, n_items), dtype=np.float32)
        rows, cols = _top_k_chunk(
            user_side[users], item_side_t, activity[users], rng, local.keys, local.work
        )
        user = users[rows]
        # Position of each pick within its user: picks are grouped by row, best first.
        first = np.searchsorted(rows, np.arange(len(users)))
        rank = np.arange(len(rows)) - first[rows]
        dest = offsets[user] + rank
        out_items[dest] = cols + 1

        # Rating score: the affinity with log p re-weighted, plus leniency and noise.
        aff = np.einsum("nd,nd->n", user_side[user], item_side[cols], dtype=np.float32)
        out_score[dest] = (
            aff
            + (RATING_POPULARITY_WEIGHT - 1.0) * latent.log_popularity[cols]
            + latent.leniency[user]
            + cfg.noise * rng.standard_normal(len(cols), dtype=np.float32)
        )

        # Sorted uniform offsets in [0, length - n_u], plus the rank to make them strictly
        # increasing, assigned in draw order: the item drawn first is consumed first.
        room = latent.window_length[user] - activity[user] + 1
        offset = rng.integers(0, room)
        offset = offset[np.lexsort((offset, rows))]
        out_time[dest] = latent.window_start[user] + offset + rank

    n_workers = workers if workers is not None else _available_cpus()
    n_workers = max(1, min(n_workers, len(chunks)))
    if n_workers == 1:
        for job in range(len(chunks)):
            run(job)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for _ in pool.map(run, range(len(chunks))):
                pass
    user_ids = np.repeat(np.arange(1, n_users + 1, dtype=np.int64), activity)
    return user_ids, out_items, out_score, out_time


def _top_k_chunk(
    user_side: np.ndarray,
    item_side_t: np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
    keys: np.ndarray,
    work: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k[r]`` largest Gumbel-perturbed affinities, best first.

    Args:
      user_side: [c, D] user features (see ``_user_side``).
      item_side_t: [D, I] item features, transposed.
      k: [c] how many items each row takes.
      rng: this chunk's stream.
      keys, work: [>= c, I] float32 scratch buffers.

    Returns:
      (rows, cols): [sum(k)] row index in the chunk and item index (0-based), grouped by row
      in increasing order and, within a row, in decreasing order of the key.
    """
    c, n_items = user_side.shape[0], item_side_t.shape[1]
    keys, work = keys[:c], work[:c]
    # einsum without BLAS: OpenBLAS's own threads would fight the worker threads.
    np.einsum("cd,di->ci", user_side, item_side_t, out=keys, optimize=False)
    # Gumbel noise as -log(-log(U)), U ~ U[0, 1) in float32 (cheaper than the exponential
    # ziggurat plus a log); U = 0 gives a key of -inf, the Gumbel's far lower tail.
    rng.random(out=work, dtype=np.float32)
    with np.errstate(divide="ignore"):
        np.log(work, out=work)
        np.negative(work, out=work)
        np.log(work, out=work)
    np.subtract(keys, work, out=keys)

    # Any threshold at or below a row's k-th largest key will do: the candidates above it are
    # sorted and cut to k below. One threshold rank per chunk (its largest k) keeps the partial
    # sorts cheap; rows have similar k because users are chunked in order of activity. The
    # threshold is estimated from a sample of the columns, and computed exactly (a partial sort
    # of the whole row) for the rare rows where the estimate is too high.
    k_max = int(k.max())
    threshold = _threshold_estimate(keys, k_max, work)
    flat = np.flatnonzero(keys >= threshold[:, None])
    short = np.bincount(flat // n_items, minlength=c) < k
    if short.any():
        threshold[short] = _kth_largest(keys[short], k_max, work[: int(short.sum())])
        flat = np.flatnonzero(keys >= threshold[:, None])
    rows, cols = np.divmod(flat, n_items)
    # Best first within a row, equal keys (float32 ties) by item index: ``flat`` is in row-major
    # order, so a stable sort by key and then a stable sort by row give exactly that.
    by_key = np.argsort(-keys.ravel()[flat], kind="stable")
    by_row = by_key[np.argsort(rows[by_key], kind="stable")]
    rows, cols = rows[by_row], cols[by_row]
    first = np.searchsorted(rows, np.arange(c))
    keep = np.arange(len(rows)) - first[rows] < k[rows]
    return rows[keep], cols[keep]


def _kth_largest(keys: np.ndarray, k: int, work: np.ndarray) -> np.ndarray:
    """[c] the ``k``-th largest value of each row of ``keys`` [c, n] (``work``: scratch)."""
    n = keys.shape[1]
    np.copyto(work, keys)
    work.partition(n - k, axis=1)
    return work[:, n - k].copy()


def _threshold_estimate(keys: np.ndarray, k: int, work: np.ndarray) -> np.ndarray:
    """[c] a value that usually lies just below each row's ``k``-th largest key.

    The first ``n // THRESHOLD_SAMPLE`` columns are a random sample of the items (item ids
    carry no structure). If the sample holds a share ``q`` of the columns, about ``q * k`` of
    its values exceed the row's k-th largest key; taking the ``j``-th largest sample value with
    ``j = q k + 4 sqrt(q k) + 2`` makes an estimate above it rare, and the caller checks every
    row anyway. Costs about an eighth of an exact partial sort.
    """
    n = keys.shape[1]
    m = n // THRESHOLD_SAMPLE
    qk = k * m / n
    j = math.ceil(qk + 4.0 * math.sqrt(qk) + 2.0)
    if m < 64 or j > m // 2:
        return _kth_largest(keys, k, work)
    sample = work[:, :m]
    np.copyto(sample, keys[:, :m])
    sample.partition(m - j, axis=1)
    return sample[:, m - j].copy()


def _ratings(score: np.ndarray) -> np.ndarray:
    """Map scores to 1..5 by their global quantiles so that shares equal ``RATING_SHARES``."""
    cuts = np.quantile(score, np.cumsum(RATING_SHARES)[:-1])
    return 1.0 + np.searchsorted(cuts, score, side="right").astype(np.float64)


def _allocate(weights: np.ndarray, total: int, minimum: int, cap: int) -> np.ndarray:
    """Integers ``minimum <= n_u <= cap`` summing to ``total``, ``n_u - minimum`` ~ weights.

    The extra ``total - minimum * len(weights)`` is shared in proportion to ``weights`` with
    shares above ``cap - minimum`` clipped and re-shared (water filling), then rounded by the
    largest remainder.
    """
    extra_total = total - minimum * len(weights)
    room = cap - minimum
    share = np.zeros(len(weights))
    free = np.ones(len(weights), dtype=bool)
    remaining = float(extra_total)
    while True:
        proposal = remaining * weights[free] / weights[free].sum()
        over = proposal > room
        if not over.any():
            share[free] = proposal
            break
        idx = np.flatnonzero(free)[over]
        share[idx] = room
        free[idx] = False
        remaining -= room * len(idx)
    base = np.floor(share).astype(np.int64)
    frac = share - base
    missing = extra_total - int(base.sum())
    if missing > 0:  # the usual case: round up the largest remainders (all below the cap)
        candidates = np.flatnonzero(base < room)
        up = candidates[np.argsort(-frac[candidates], kind="stable")[:missing]]
        base[up] += 1
    elif missing < 0:  # float round-off pushed the floors over: round down the smallest
        candidates = np.flatnonzero(base > 0)
        down = candidates[np.argsort(frac[candidates], kind="stable")[:-missing]]
        base[down] -= 1
    return base + minimum


# --- side tables ----------------------------------------------------------------------------
def _items_table(cfg: SyntheticConfig, latent: LatentStructure) -> pd.DataFrame:
    rng = np.random.Generator(np.random.PCG64(_seed_sequences(cfg.seed)[2]))
    n_items = latent.n_items
    has = latent.item_genres > 0
    names = np.array(latent.genre_names, dtype=object)
    genres = [GENRE_SEPARATOR.join(names[row]) for row in has]

    # Two different words, each from one of the item's genres chosen uniformly.
    n_genre = has.sum(axis=1)
    own = np.argsort(~has, axis=1, kind="stable")  # the item's genres first, in genre order
    primary = own[np.arange(n_items), rng.integers(0, n_genre)]
    second = own[np.arange(n_items), rng.integers(0, n_genre)]
    w1 = rng.integers(0, WORDS_PER_GENRE, n_items)
    w2 = rng.integers(0, WORDS_PER_GENRE - 1, n_items)
    w2 = np.where((second == primary) & (w2 >= w1), w2 + 1, w2)
    words = latent.genre_words
    first_words = words[primary, w1]
    second_words = words[second, w2]
    tokens = _unique_tokens(rng, n_items)
    titles = [f"{a} {b} {t}" for a, b, t in zip(first_words, second_words, tokens, strict=True)]

    factors = latent.item_factors
    top = np.argsort(-np.abs(factors), axis=1, kind="stable")[:, :2]
    positive = np.take_along_axis(factors, top, axis=1) > 0
    poles = _factor_poles(factors.shape[1])
    text = [
        " ".join(poles[f][int(p)] for f, p in zip(dims, signs, strict=True))
        for dims, signs in zip(top.tolist(), positive.tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            ITEM_ID: np.arange(1, n_items + 1, dtype=np.int64),
            TITLE: titles,
            GENRES: genres,
            TEXT: text,
        }
    )


def _users_table(cfg: SyntheticConfig, latent: LatentStructure) -> pd.DataFrame:
    rng = np.random.Generator(np.random.PCG64(_seed_sequences(cfg.seed)[3]))
    n_users = latent.n_users
    zips = rng.integers(0, 100_000, n_users)
    return pd.DataFrame(
        {
            USER_ID: np.arange(1, n_users + 1, dtype=np.int64),
            AGE: latent.age,
            GENDER: np.array(GENDERS)[latent.gender],
            OCCUPATION: np.array([name for name, _ in OCCUPATIONS])[latent.occupation],
            ZIP_CODE: [f"{z:05d}" for z in zips.tolist()],
        }
    )


def _unique_tokens(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct capitalised pseudo-words of consonant-vowel syllables, in random order."""
    syllables = [c + v for c in TOKEN_CONSONANTS for v in TOKEN_VOWELS]
    base = len(syllables)
    length = max(TOKEN_MIN_SYLLABLES, math.ceil(math.log(n) / math.log(base)))
    codes = rng.choice(base**length, size=n, replace=False)
    digits = np.empty((n, length), dtype=np.int64)
    for j in range(length):
        digits[:, length - 1 - j] = codes % base
        codes = codes // base
    table = np.array(syllables, dtype=object)[digits]
    return ["".join(row).capitalize() for row in table.tolist()]


# --- helpers --------------------------------------------------------------------------------
def _user_side(latent: LatentStructure) -> np.ndarray:
    """[U, F + G + 1] float32: ``[2 u / sqrt(F), a_u, 1]``, so that user . item = affinity."""
    f = latent.user_factors.shape[1]
    ones = np.ones((latent.n_users, 1), dtype=np.float32)
    scaled = latent.user_factors * np.float32(FACTOR_WEIGHT / math.sqrt(f))
    genre = latent.user_genre_affinity * np.float32(GENRE_WEIGHT)
    return np.hstack([scaled, genre, ones]).astype(np.float32)


def _item_side(latent: LatentStructure) -> np.ndarray:
    """[I, F + G + 1] float32: ``[v_i, m_i, log p_i]``."""
    log_p = latent.log_popularity[:, None]
    return np.hstack([latent.item_factors, latent.item_genres, log_p]).astype(np.float32)


def _seed_sequences(seed: int) -> list[np.random.SeedSequence]:
    """Independent streams: latent structure, interaction chunks, items, users."""
    return np.random.SeedSequence(seed).spawn(4)


def _genre_names(n: int) -> tuple[str, ...]:
    return tuple(GENRE_NAMES[g] if g < len(GENRE_NAMES) else f"Genre{g + 1}" for g in range(n))


def _genre_words(n: int) -> np.ndarray:
    rows = [
        GENRE_WORDS[name]
        if name in GENRE_WORDS
        else tuple(f"{name}Word{j + 1}" for j in range(WORDS_PER_GENRE))
        for name in _genre_names(n)
    ]
    return np.array(rows, dtype=object)


def _factor_poles(n: int) -> list[tuple[str, str]]:
    return [
        FACTOR_POLES[f] if f < len(FACTOR_POLES) else (f"factor{f + 1}-low", f"factor{f + 1}-high")
        for f in range(n)
    ]


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _time_range(cfg: SyntheticConfig) -> tuple[int, int]:
    """``[start, end)`` in unix seconds; naive times are UTC."""
    bounds = []
    for key in ("start", "end"):
        value = getattr(cfg, key)
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"'{value}' is not a date",
                where=f"data.synthetic.{key}",
                fix="use an ISO date such as 2015-01-01",
            ) from exc
        if ts is pd.NaT:
            raise ConfigError(f"'{value}' is not a date", where=f"data.synthetic.{key}")
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        bounds.append(int(ts.timestamp()))
    start, end = bounds
    if end - start < DAY:
        raise ConfigError(
            f"start {cfg.start} must be at least a day before end {cfg.end}",
            where="data.synthetic.end",
        )
    return start, end


def _check_scalars(cfg: SyntheticConfig) -> None:
    def fail(key: str, what: str, fix: str | None = None) -> None:
        raise ConfigError(
            f"{key} = {getattr(cfg, key)!r}: {what}", where=f"data.synthetic.{key}", fix=fix
        )

    def is_int(value: object) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    n = cfg.n_interactions
    if not is_int(n) or not MIN_INTERACTIONS <= n <= MAX_INTERACTIONS:
        fail(
            "n_interactions",
            f"must be an integer from {MIN_INTERACTIONS:,} to {MAX_INTERACTIONS:,}",
            "for other sizes use a real data set (data.source: movielens or csv)",
        )
    for key in ("n_users", "n_items"):
        value = getattr(cfg, key)
        if value is not None and (not is_int(value) or value < 1):
            fail(key, "must be a positive integer or null (derived from n_interactions)")
    if not is_int(cfg.n_factors) or cfg.n_factors < 1:
        fail("n_factors", "must be a positive integer")
    if not is_int(cfg.n_genres) or not 1 <= cfg.n_genres <= 100:
        fail("n_genres", "must be an integer from 1 to 100")
    for key in ("popularity_exponent", "noise"):
        value = getattr(cfg, key)
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            fail(key, "must be a finite number >= 0")
