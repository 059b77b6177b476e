"""recsys: validated data, deep recommenders, a metric gate and a BentoML service.

The library is pure and importable: it never imports dagster, and heavy dependencies
(TensorFlow, Great Expectations) are imported only where they are used.
"""

__version__ = "0.1.0"
