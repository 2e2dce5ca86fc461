"""Prediction from a checkpoint file alone: no Lightning, no Hydra on this path."""
