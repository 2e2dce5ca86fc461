"""What a run prints: each line once, no advertising, progress bars only where someone watches.

Here, not in `train/`, because `predict.py --out` runs Lightning too and predict/ never imports train/.

Under `train.py`, Hydra configures the root logger (console and the run's log file, `conf/hydra/`).
Lightning, imported before that, gives its loggers a console handler of their own, so every Lightning line would
appear twice; here they are handed to the root logger alone. From Python, with no logging configured, detective's
and Lightning's lines go to stderr as plain messages.
"""

from __future__ import annotations

import logging
import sys

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics")
ADVERT_PREFIX = "💡 Tip:"  # Lightning's suggestion to install its cloud logger, on every Trainer


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERT_PREFIX)


def configure_output() -> None:
    """Route Lightning's lines through the root logger only, without its advert; safe to call again."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdverts())
    logging.getLogger("detective").setLevel(logging.INFO)


def on_terminal() -> bool:
    """True when a person is watching the output (progress bars help there, and only there)."""
    return sys.stderr.isatty()
