"""What labelling reports: one `Result` per file, or a `LabelError` when what the user gave is unusable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["renamed", "already", "kept", "not_image", "conflict", "failed"]


class LabelError(ValueError):
    """A problem with what the user gave (folder, tag, journal); the message is one line that says the fix."""


@dataclass(frozen=True)
class Result:
    """What happened to one file: `src` was (or would be) renamed to `dst`, or was left alone and why."""

    src: Path
    status: Status
    dst: Path | None = None
    detail: str = ""
    unrecognised: bool = False  # renamed, yet the dataset still does not read the new name as AI
