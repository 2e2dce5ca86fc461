"""`detective-train` / `train.py`: Hydra composes the config from `conf/` (the package `detective.conf`), `run.train`
does the work. The configs ship as part of the package, so an installed wheel trains from any folder."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from detective.commands import program_name
from detective.train.config import CONF_MODULE, demo_by_default, register_resolvers

register_resolvers()


def run() -> None:
    """The command: the demo recipe unless the command line names your data or an experiment, then Hydra."""
    sys.argv[1:] = demo_by_default(sys.argv[1:])
    main()


@hydra.main(config_path=f"pkg://{CONF_MODULE}", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train with the composed config; returns the monitored score for sweepers."""
    from detective.train.run import USER_ERRORS, train

    try:
        return train(cfg)
    except USER_ERRORS as err:  # bad data, paths, weights or devices: one line, no traceback
        sys.exit(f"{program_name('train')}: error: {err}")
