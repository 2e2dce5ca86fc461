"""Train detective: `python train.py [overrides]`, e.g. `python train.py data.root=~/photos trainer=gpu`.

With no arguments it trains on the built-in demo data set, on the CPU, offline. See README.md; the same command is
installed as `detective-train`.
"""

from detective.train.cli import run

if __name__ == "__main__":
    run()
