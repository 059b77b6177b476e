"""Recommenders behind one interface (``base.Recommender``): classic baselines and deep models."""
