"""Draw the synthetic tables from a ``LatentStructure``: interactions by Gumbel-top-k sampling
(chunked, threaded), their ratings and timestamps, then the items and users tables."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import pandas as pd

from recsys import schema
from recsys.config import SyntheticConfig
from recsys.data.synthetic.catalog import (
    GENDERS,
    OCCUPATIONS,
    TOKEN_CONSONANTS,
    TOKEN_MIN_SYLLABLES,
    TOKEN_VOWELS,
    WORDS_PER_GENRE,
    factor_poles,
)
from recsys.data.synthetic.latent import (
    RATING_POPULARITY_WEIGHT,
    RATING_SHARES,
    LatentStructure,
    item_vectors,
    seed_sequences,
    user_vectors,
)

CHUNK_ELEMENTS: Final = 1 << 19
"""User-item scores per chunk (2 MiB of float32): fits in L2 cache. Part of the generator's
definition: changing it changes the random streams, hence the data."""
THRESHOLD_SAMPLE: Final = 8
"""Each row's top-k threshold is estimated from 1/8 of its columns (see _threshold_estimate)."""


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

    user_side = user_vectors(latent)  # [U, D]
    item_side = item_vectors(latent)  # [I, D]
    item_side_t = np.ascontiguousarray(item_side.T)  # [D, I]
    rows_per_chunk = max(1, CHUNK_ELEMENTS // n_items)
    order = np.argsort(activity, kind="stable")  # similar n_u share a chunk: less padding
    chunks = [order[i : i + rows_per_chunk] for i in range(0, n_users, rows_per_chunk)]
    seeds = seed_sequences(cfg.seed)[1].spawn(len(chunks))
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
      user_side: [c, D] user features (see ``latent.user_vectors``).
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


# --- side tables ----------------------------------------------------------------------------
def _items_table(cfg: SyntheticConfig, latent: LatentStructure) -> pd.DataFrame:
    rng = np.random.Generator(np.random.PCG64(seed_sequences(cfg.seed)[2]))
    n_items = latent.n_items
    has = latent.item_genres > 0
    names = np.array(latent.genre_names, dtype=object)
    genres = [schema.GENRE_SEPARATOR.join(names[row]) for row in has]

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
    poles = factor_poles(factors.shape[1])
    text = [
        " ".join(poles[f][int(p)] for f, p in zip(dims, signs, strict=True))
        for dims, signs in zip(top.tolist(), positive.tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            schema.ITEM_ID: np.arange(1, n_items + 1, dtype=np.int64),
            schema.TITLE: titles,
            schema.GENRES: genres,
            schema.TEXT: text,
        }
    )


def _users_table(cfg: SyntheticConfig, latent: LatentStructure) -> pd.DataFrame:
    rng = np.random.Generator(np.random.PCG64(seed_sequences(cfg.seed)[3]))
    n_users = latent.n_users
    zips = rng.integers(0, 100_000, n_users)
    return pd.DataFrame(
        {
            schema.USER_ID: np.arange(1, n_users + 1, dtype=np.int64),
            schema.AGE: latent.age,
            schema.GENDER: np.array(GENDERS)[latent.gender],
            schema.OCCUPATION: np.array([name for name, _ in OCCUPATIONS])[latent.occupation],
            schema.ZIP_CODE: [f"{z:05d}" for z in zips.tolist()],
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


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
