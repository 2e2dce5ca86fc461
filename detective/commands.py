"""detective's three commands by the name the user started them with: `train.py`, `predict.py`, `label.py` in a
clone, `detective-train`, `detective-predict`, `detective-label` when installed. Usage lines, error lines and the
commands a run suggests then read as something the user can type. Standard library only (label.py starts fast)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

CONSOLE_PREFIX = "detective-"


def started_as_console_script() -> bool:
    """Whether this process is one of the installed console scripts (`detective-train`, ...)."""
    return Path(sys.argv[0]).name.startswith(CONSOLE_PREFIX)


def program_name(name: str) -> str:
    """`detective-<name>` in a console script, else the script's file name `<name>.py`."""
    return f"{CONSOLE_PREFIX}{name}" if started_as_console_script() else f"{name}.py"


def command(name: str) -> str:
    """A command line that runs `name` (train, predict, label) from where this process was started: the script
    beside this one as the user typed it (`python predict.py`), else the console script."""
    script = Path(sys.argv[0]).parent / f"{name}.py"
    if started_as_console_script() or not script.is_file():
        return f"{CONSOLE_PREFIX}{name}"
    return f"python {shlex.quote(str(script))}"
