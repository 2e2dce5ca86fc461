"""Hydra configs of `detective-train` / `train.py` (a package, so Hydra finds them as `pkg://detective.conf`)."""
