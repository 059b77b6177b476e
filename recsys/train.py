"""The shared Keras training loop under its original import path.

The code lives in ``recsys.training`` (one module per responsibility: seeds, devices, data,
callbacks, validation, checkpoints, the loop); this facade keeps ``from recsys.train import
...`` working for the models, ``bench/`` and the tests (issue #16). It re-exports exactly
``recsys.training.__all__``.
"""

from recsys.training import *  # noqa: F403
from recsys.training import __all__ as __all__
