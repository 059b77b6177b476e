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

Modules
    ``latent`` (sizes, ``LatentStructure``, ``latent_structure``), ``sampling`` (the
    interactions and the items and users tables drawn from it), ``catalog`` (genre, word and
    demographic names). This package holds ``generate`` and re-exports their public names.
"""

from __future__ import annotations

from typing import Final

import pandas as pd

from recsys.config import SyntheticConfig
from recsys.data.synthetic.catalog import (
    AGE_GROUP_P,
    AGE_GROUPS,
    FACTOR_POLES,
    GENDER_P,
    GENDERS,
    GENRE_NAMES,
    GENRE_WORDS,
    OCCUPATIONS,
    WORDS_PER_GENRE,
)
from recsys.data.synthetic.latent import (
    DAY,
    INTERACTIONS_PER_ITEM,
    INTERACTIONS_PER_USER,
    MAX_DENSITY,
    MAX_INTERACTIONS,
    MAX_PAIRS,
    MIN_INTERACTIONS,
    MIN_ITEMS,
    MIN_PER_USER,
    MIN_USERS,
    RATING_SHARES,
    LatentStructure,
    latent_structure,
    resolve_sizes,
)
from recsys.data.synthetic.latent import _allocate as _allocate  # tests reach it here
from recsys.data.synthetic.sampling import (
    CHUNK_ELEMENTS,
    THRESHOLD_SAMPLE,
    _items_table,
    _ratings,
    _sample_interactions,
    _users_table,
)
from recsys.data.synthetic.sampling import _top_k_chunk as _top_k_chunk  # tests reach it here
from recsys.schema import EXPLICIT, INTERACTION_DTYPES, ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset

__all__ = [
    "AGE_GROUPS",
    "AGE_GROUP_P",
    "CHUNK_ELEMENTS",
    "DATASET_NAME",
    "DAY",
    "FACTOR_POLES",
    "GENDERS",
    "GENDER_P",
    "GENRE_NAMES",
    "GENRE_WORDS",
    "INTERACTIONS_PER_ITEM",
    "INTERACTIONS_PER_USER",
    "MAX_DENSITY",
    "MAX_INTERACTIONS",
    "MAX_PAIRS",
    "MIN_INTERACTIONS",
    "MIN_ITEMS",
    "MIN_PER_USER",
    "MIN_USERS",
    "OCCUPATIONS",
    "RATING_SHARES",
    "THRESHOLD_SAMPLE",
    "WORDS_PER_GENRE",
    "LatentStructure",
    "generate",
    "latent_structure",
    "resolve_sizes",
]

DATASET_NAME: Final = "synthetic"


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
