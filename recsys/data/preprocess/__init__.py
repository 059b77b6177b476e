"""Clean, index, featurize and split interactions: the pure core of the ``preprocess`` stage.

``preprocess`` runs ``deduplicate -> to_implicit -> kcore -> Vocabulary -> ContentFeatures ->
split`` and returns a frozen ``Processed``; ``save_processed`` / ``load_processed`` move it to and
from disk through ``recsys.data.io``. Every step is vectorized numpy/pandas (no Python loop per
row or per user) and a pure function of its inputs and ``SplitConfig.seed``. The cleaned
interactions are put in one canonical order, ``(user_id, timestamp, item_id)``, before anything
random happens, so a split depends only on the *set* of rows and the seed, never on file order.

Vocabulary decision: the id vocabularies cover every user and item of the cleaned interactions
**and** every row of the users and items tables (also those that k-core removed or that never
interacted), so content and hybrid models can score cold-start items and users. Which of them a
collaborative model has actually seen is ``InteractionSplit.item_in_train(n_items)`` /
``user_in_train(n_users)``.

The modules, in pipeline order:

==============  ===============================================================================
cleaning        ``deduplicate``, ``to_implicit``, ``kcore`` (``kcore_mask``)
vocabulary      ``Vocabulary``, ``index_interactions``, ``USER_IDX`` / ``ITEM_IDX``
features        ``ContentFeatures``, ``build_features`` (genres, title tokens, demographics)
splits          ``InteractionSplit``, ``split_interactions`` and one function per method
negatives       ``sample_negatives`` (leave-one-out evaluation candidates)
processed       ``Processed``, ``preprocess`` (the stage), ``save_processed``, ``load_processed``
arrays          sorted-set and equality helpers the others share
==============  ===============================================================================

This package re-exports their public names, so ``from recsys.data.preprocess import X`` keeps
working; new code may import from the module that defines ``X``.
"""

from recsys.data.preprocess.cleaning import deduplicate, kcore, kcore_mask, to_implicit
from recsys.data.preprocess.features import (
    AGE_EDGES,
    AGE_LABELS,
    OOV_ID,
    OOV_TOKEN,
    PAD_ID,
    PAD_TOKEN,
    USER_CATEGORICALS,
    ContentFeatures,
    build_features,
)
from recsys.data.preprocess.negatives import sample_negatives
from recsys.data.preprocess.processed import (
    FORMAT_VERSION,
    META_FILE,
    Processed,
    load_processed,
    preprocess,
    save_processed,
)
from recsys.data.preprocess.splits import (
    InteractionSplit,
    check_split_config,
    global_temporal,
    kfold,
    leave_one_out,
    predefined,
    random_holdout,
    split_interactions,
    temporal_holdout,
)
from recsys.data.preprocess.vocabulary import (
    INDEXED_COLUMNS,
    ITEM_IDX,
    PAIR_COLUMNS,
    USER_IDX,
    Vocabulary,
    index_interactions,
)

__all__ = [
    "AGE_EDGES",
    "AGE_LABELS",
    "FORMAT_VERSION",
    "INDEXED_COLUMNS",
    "ITEM_IDX",
    "META_FILE",
    "OOV_ID",
    "OOV_TOKEN",
    "PAD_ID",
    "PAD_TOKEN",
    "PAIR_COLUMNS",
    "USER_CATEGORICALS",
    "USER_IDX",
    "ContentFeatures",
    "InteractionSplit",
    "Processed",
    "Vocabulary",
    "build_features",
    "check_split_config",
    "deduplicate",
    "global_temporal",
    "index_interactions",
    "kcore",
    "kcore_mask",
    "kfold",
    "leave_one_out",
    "load_processed",
    "predefined",
    "preprocess",
    "random_holdout",
    "sample_negatives",
    "save_processed",
    "split_interactions",
    "temporal_holdout",
    "to_implicit",
]
