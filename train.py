"""Train detective: `python train.py [overrides]`, e.g. `python train.py data.root=~/photos trainer=gpu`.

With no arguments it trains on the built-in demo data set, on the CPU, offline. See README.md.
"""

import hydra
from omegaconf import DictConfig

from detective.train.config import register_resolvers

register_resolvers()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from detective.train.run import train

    return train(cfg)


if __name__ == "__main__":
    main()
