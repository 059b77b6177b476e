"""The synthetic data set's sizes and latent structure: ``resolve_sizes``, ``latent_structure``.

The model is documented in ``recsys.data.synthetic``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from recsys.config import SyntheticConfig
from recsys.data.synthetic.catalog import (
    AGE_GROUP_P,
    AGE_GROUPS,
    GENDER_P,
    GENDERS,
    OCCUPATIONS,
    genre_names,
    genre_words,
)
from recsys.errors import ConfigError

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
        personal = user_vectors(self)[users] * item_vectors(self)[items]
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
    rng = np.random.Generator(np.random.PCG64(seed_sequences(cfg.seed)[0]))
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
        genre_names=genre_names(n_genres),
        genre_words=genre_words(n_genres),
    )


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


def user_vectors(latent: LatentStructure) -> np.ndarray:
    """[U, F + G + 1] float32: ``[2 u / sqrt(F), a_u, 1]``, so that user . item = affinity."""
    f = latent.user_factors.shape[1]
    ones = np.ones((latent.n_users, 1), dtype=np.float32)
    scaled = latent.user_factors * np.float32(FACTOR_WEIGHT / math.sqrt(f))
    genre = latent.user_genre_affinity * np.float32(GENRE_WEIGHT)
    return np.hstack([scaled, genre, ones]).astype(np.float32)


def item_vectors(latent: LatentStructure) -> np.ndarray:
    """[I, F + G + 1] float32: ``[v_i, m_i, log p_i]``."""
    log_p = latent.log_popularity[:, None]
    return np.hstack([latent.item_factors, latent.item_genres, log_p]).astype(np.float32)


def seed_sequences(seed: int) -> list[np.random.SeedSequence]:
    """Independent streams: latent structure, interaction chunks, items, users."""
    return np.random.SeedSequence(seed).spawn(4)


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
