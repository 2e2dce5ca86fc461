"""Scoring predictions against labels: pure functions of probabilities and targets, shared by training (the
threshold calibrated on the validation split) and `predict.py --evaluate`. No Lightning, no Hydra."""
