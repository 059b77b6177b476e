"""The serving edge: the BentoML model store, the champion registry, and the Bento service.

The only package of ``recsys`` that imports ``bentoml``; it is imported lazily by the modules
that need it, so ``import recsys.serving`` stays cheap.
"""
