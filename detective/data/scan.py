"""Walk a data root and turn files into labelled samples (the only step here that touches the disk).

Hidden files and folders are skipped, symlinked folders are followed once (no loops), non-image
files are counted, and every image's header is probed so that zero-byte, non-image and
decompression-bomb files are reported and excluded before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from detective.data.images import ImageDecodeError, probe
from detective.data.labels import SPLIT_NAMES, LabelRule, is_image_name, label_path


@dataclass(frozen=True)
class Sample:
    """One labelled image, with the header facts the data audit needs."""

    path: Path
    subject: str
    is_ai: bool
    split: str | None = None
    format: str = ""
    size: tuple[int, int] = (0, 0)
    name_disagrees: bool = False

    def key(self, root: Path) -> str:
        """The sample's path relative to the root, with `/`: stable across machines, used to split."""
        return self.path.relative_to(root).as_posix()


@dataclass
class ScanResult:
    """What a scan found: the usable samples and everything it left out, for the audit."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    split_layout: bool = False
    ignored_files: int = 0  # non-image files
    unlabelled: list[Path] = field(default_factory=list)  # images outside any subject folder
    unreadable: list[ImageDecodeError] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # file names of all labelled images, for rule warnings


def walk_files(root: Path) -> Iterator[Path]:
    """Visible files under `root`, sorted, following symlinked folders but never the same folder twice."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def has_split_layout(root: Path) -> bool:
    """True when the root holds a `train` folder and, besides it, only `val`/`test` folders."""
    tops = {p.name.casefold() for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return "train" in tops and tops <= set(SPLIT_NAMES)


def scan_folder(root: str | os.PathLike, rule: LabelRule = LabelRule()) -> ScanResult:
    """Label every image under `root`; raise FileNotFoundError/NotADirectoryError for a bad root."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data root not found: {root} (set data.root=/path/to/images)")
    if not root.is_dir():
        raise NotADirectoryError(f"data root is not a folder: {root} (point data.root at the folder of class folders)")
    root = root.resolve()
    result = ScanResult(root, split_layout=has_split_layout(root))
    for path in walk_files(root):
        if not is_image_name(path.name):
            result.ignored_files += 1
            continue
        label = label_path(path.relative_to(root).parts, rule, result.split_layout)
        if label is None:
            result.unlabelled.append(path)
            continue
        try:
            fmt, size = probe(path)
        except ImageDecodeError as err:
            result.unreadable.append(err)
            continue
        if fmt == "MPO":  # a camera JPEG with extra frames: same codec, same format for the audit
            fmt = "JPEG"
        result.names.append(path.name)
        result.samples.append(Sample(path, label.subject, label.is_ai, label.split, fmt, size, label.name_disagrees))
    return result
