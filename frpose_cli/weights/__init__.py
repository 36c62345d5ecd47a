"""Weights: the model zoo, downloads, the one loader, checkpoints, warm starts."""
