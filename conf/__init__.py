"""Hydra configs of `detective-train` / `train.py`: this folder is installed as the package `detective.conf`
(pyproject.toml's `package-dir`), so Hydra finds them as `pkg://detective.conf` in a clone and an installed wheel."""
