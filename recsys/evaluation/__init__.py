"""Evaluation under the benchmark protocols (``../shared/benchmarks/PROTOCOL.md``).

``metrics`` is numpy only and imports in milliseconds; ``evaluate`` runs a ``Recommender``
through a protocol. Nothing is imported here, so ``import recsys.evaluation.metrics`` stays
light.
"""
