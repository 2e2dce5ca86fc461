"""What `predict.py` works on: command-line inputs -> image files, and the checkpoint (the default one, its kind).

Standard library only (plus the dataset's own idea of an image name), so it costs nothing at start-up.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from detective.data.labels import IMAGE_EXTENSIONS, is_image_name

CHECKPOINT_NAME = "best.ckpt"
# Where train.py writes: <root>/runs/<id>/checkpoints/best.ckpt and <root>/multirun/<id>/<job>/checkpoints/best.ckpt.
CHECKPOINT_PATTERNS = ("runs/*/checkpoints/" + CHECKPOINT_NAME, "multirun/*/*/checkpoints/" + CHECKPOINT_NAME)
ONNX_SUFFIX = ".onnx"  # `predict.py --export` writes it; as --checkpoint it is predicted with onnxruntime, not torch


class CheckpointError(ValueError):
    """The file is missing or is not a detective checkpoint; the message names it and the fix."""


def is_onnx(path: str | os.PathLike[str]) -> bool:
    """An exported ONNX model rather than a Lightning checkpoint, by its name."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


@dataclass
class Inputs:
    """Image files to predict, in the order given, and (argument, error line) for each that yielded none."""

    files: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(args: list[str]) -> Inputs:
    """Files as given (the decoder judges their content), folders recursively, globs (`**` too), each file once.

    Inside folders and glob matches only image names count (hidden files skipped); an explicit file is always
    tried, so a mislabelled or non-image file is reported rather than silently dropped.
    """
    found = Inputs()
    seen: set[str] = set()
    for arg in args:
        files, error = _expand(arg)
        if error:
            found.errors.append((arg, error))
        for f in files:
            if f not in seen:
                seen.add(f)
                found.files.append(f)
    return found


def _expand(arg: str) -> tuple[list[str], str | None]:
    path = os.path.expanduser(arg)
    if os.path.isfile(path):
        return [path], None
    if os.path.isdir(path):
        files = _images_under(path)
        return files, None if files else f"{arg}: no images in this folder ({_extensions()})"
    if glob.has_magic(path):
        files = []
        for match in sorted(glob.glob(path, recursive=True)):
            if os.path.isdir(match):
                files += _images_under(match)
            elif is_image_name(os.path.basename(match)):
                files.append(match)
        return files, None if files else f"{arg}: no images match this pattern ({_extensions()})"
    return [], f"no such file: {arg}"


def _images_under(folder: str) -> list[str]:
    """Image files below `folder`, sorted, skipping hidden files and folders."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, n) for n in sorted(names) if is_image_name(n)]
    return out


def _extensions() -> str:
    return "looked for " + ", ".join(sorted(IMAGE_EXTENSIONS))


def default_output_root() -> Path:
    """Training's output root: `$DETECTIVE_OUTPUT`, else `outputs` in the current folder."""
    return Path(os.environ.get("DETECTIVE_OUTPUT") or "outputs")


def newest_checkpoint(root: str | Path | None = None) -> Path | None:
    """The most recently written best checkpoint of any run or multirun job under `root`, or None."""
    root = Path(root) if root is not None else default_output_root()
    candidates = [p for pattern in CHECKPOINT_PATTERNS for p in root.glob(pattern) if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)
