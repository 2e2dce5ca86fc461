"""Train detective: `python train.py [overrides]`, e.g. `python train.py data.root=~/photos trainer=gpu`.

With no arguments it trains on the built-in demo data set, on the CPU, offline. See README.md.
"""

import sys

import hydra
from omegaconf import DictConfig

from detective.train.config import register_resolvers

register_resolvers()


@hydra.main(config_path="pkg://detective.conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from detective.train.run import USER_ERRORS, train

    try:
        return train(cfg)
    except USER_ERRORS as err:  # bad data, paths, weights or devices: one line, no traceback
        sys.exit(f"train.py: error: {err}")


if __name__ == "__main__":
    main()
