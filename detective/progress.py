"""A one-line progress bar on stderr for the command-line tools (standard library only: no start-up cost).

Not tqdm: importing it (it reads its package metadata: importlib.metadata, inspect, logging) adds half or more
to the start-up of `label.py`, which imports nothing heavy otherwise (`python -X importtime label.py --help`).
"""

from __future__ import annotations

import time
from typing import TextIO


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class ProgressBar:
    """Drawn only on a terminal and for at least `min_total` items, at most ten times a second; `clear()`
    wipes it so a message line can be printed, and the next update draws it again."""

    def __init__(self, total: int, stream: TextIO, min_total: int = 2, unit: str = "", enabled: bool = True) -> None:
        self.total, self.stream, self.unit = total, stream, unit
        self.enabled = enabled and total >= min_total and is_terminal(stream)
        self.done = 0
        self._drawn_at = 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or (done < self.total and now - self._drawn_at < 0.1):
            return
        self._drawn_at = now
        filled = 30 * done // max(self.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}{self.unit}")
        self.stream.flush()

    def advance(self) -> None:
        self.update(self.done + 1)

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn_at = 0.0
