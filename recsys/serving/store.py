"""Model registry: trained models in the BentoML model store, and the champion pointer.

Two halves:

- **Models** (``save_model`` / ``load_model``): every trained ``Recommender`` goes into the
  BentoML model store with ``bentoml.models.create`` (BentoML 1.4; the ``bentoml.keras`` and
  ``bentoml.tensorflow`` modules are deprecated). Its saved directory (``Recommender.save``:
  parameters, vocabularies, seen items) is the model's path, so a service loads it with
  ``Recommender.load(Path(bento_model.path))``. Labels carry the data version, git revision,
  params hash and primary metrics; metadata also carries the split fingerprint that the gate
  decision must match. The store is ``$BENTOML_HOME/models`` (read when called, not at import).
- **Champion** (``Registry``): a pointer file ``<root>/champion.json`` written atomically
  (temp file + ``os.replace``) with the stack of earlier champions for rollback, an append-only
  history ``<root>/promotions.jsonl`` (every promotion and rollback, with time, tag and
  reasons), and the recorded gate decisions ``<root>/decisions/<name>/<version>.json``. Every
  change happens under an exclusive file lock, so concurrent promotions serialize, and
  promoting the current champion again changes nothing.

``Registry.promote`` re-checks the recorded gate decision for that exact tag (``promote`` true,
every reason passed, the split fingerprint the model was saved with, and the champion that is
current now): a model trained or evaluated outside the gated job is refused. The check guards
against mistakes and skipped steps, not against someone hand-writing a decision file.

The models half lives in ``recsys.serving.model_store``, the champion half in
``recsys.serving.registry``; this module re-exports both.
"""

from recsys.serving.model_store import (
    SPLIT_KEY,
    ModelLabels,
    bentoml_home,
    get_model,
    git_revision,
    list_models,
    load_model,
    model_info,
    model_path,
    model_store,
    params_hash,
    resolve_tag,
    save_model,
)
from recsys.serving.paths import (
    CHAMPION_FILE,
    DECISIONS_DIR,
    DEFAULT_REGISTRY_DIR,
    HISTORY_FILE,
    LOCK_FILE,
)
from recsys.serving.registry import (
    ChampionRecord,
    PromotionRefused,
    PromotionResult,
    Registry,
    describe,
)

__all__ = [
    "CHAMPION_FILE",
    "DECISIONS_DIR",
    "DEFAULT_REGISTRY_DIR",
    "HISTORY_FILE",
    "LOCK_FILE",
    "SPLIT_KEY",
    "ChampionRecord",
    "ModelLabels",
    "PromotionRefused",
    "PromotionResult",
    "Registry",
    "bentoml_home",
    "describe",
    "get_model",
    "git_revision",
    "list_models",
    "load_model",
    "model_info",
    "model_path",
    "model_store",
    "params_hash",
    "resolve_tag",
    "save_model",
]
