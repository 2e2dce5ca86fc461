"""Scoring predictions against labels: the metrics (the threshold calibration among them, shared with training),
the report built from per-image records, its text and its pictures. No Lightning, no Hydra, nothing of predict/:
`predict/evaluate.py` runs the predictor over a folder and hands the records here."""
