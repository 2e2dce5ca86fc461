"""An on-disk cache of images decoded at training size, so later epochs and later runs skip decoding.

What is stored is exactly what the transforms start from: the image decoded (JPEG draft, EXIF, RGB) and resized so
its shorter side is the transforms' resize size. Evaluation therefore sees the same pixels with or without the
cache; training crops and augments this reduced image rather than the full-resolution one (the scale the model
sees anyway). An entry is keyed by the file's absolute path, size and modification time plus the resize size, so
an edited or replaced image is decoded again. An entry is raw RGB behind a 16-byte header (~0.25 MB per image at
224 px), written to a temporary name, fsynced and renamed: a crash never leaves a torn entry. Delete the folder at
any time to reclaim the space.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

import torch

from detective.data.transforms import load_image, resize_shorter
from detective.files import atomic_write

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # bump when what an entry holds changes; old entries are then simply never read (2: torch resize)
MAGIC = b"DTCRGB01"
HEADER = struct.Struct("<8sII")  # magic, width, height; then width x height x 3 bytes of RGB


def default_cache_dir() -> Path:
    """`$DETECTIVE_CACHE`, else `$XDG_CACHE_HOME/detective`, else `~/.cache/detective`."""
    if os.environ.get("DETECTIVE_CACHE"):
        return Path(os.environ["DETECTIVE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "detective"


class DecodedCache:
    """`load(path)` = `resize_shorter(load_image(path, side), side)`, from the cache when it holds the file."""

    def __init__(self, folder: str | os.PathLike[str], side: int) -> None:
        self.folder = Path(folder).expanduser()
        self.side = side
        self.writable = True  # set to False (with one warning) when the folder cannot be written

    def entry(self, path: Path) -> Path:
        st = os.stat(path)
        key = f"{CACHE_FORMAT}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{self.side}"
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return self.folder / f"{self.side}px" / digest[:2] / f"{digest}.rgb"

    def load(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """The decoded, resized uint8 (3, H, W) image; raises `ImageDecodeError` like `load_rgb` for a file that
        cannot be read."""
        path = Path(path)
        entry = None
        try:
            entry = self.entry(path)
            return self._read(entry)
        except (OSError, ValueError):  # not cached yet; a vanished file fails in load_image below
            pass
        image = resize_shorter(load_image(path, self.side), self.side)
        if self.writable and entry is not None:
            self._store(entry, image)
        return image

    def _read(self, entry: Path) -> torch.Tensor:
        with open(entry, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)  # writable, so the tensor may own it without a copy
            if f.readinto(data) != len(data):
                raise ValueError(f"{entry}: shorter than it was a moment ago")
        magic, width, height = HEADER.unpack_from(data)
        if magic != MAGIC or min(width, height) != self.side or len(data) != HEADER.size + 3 * width * height:
            raise ValueError(f"{entry}: not a complete cache entry")
        pixels = torch.frombuffer(data, dtype=torch.uint8, offset=HEADER.size)
        return pixels.view(height, width, 3).permute(2, 0, 1)

    def _store(self, entry: Path, image: torch.Tensor) -> None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(entry) as f:  # readers see the whole entry or none
                height, width = image.shape[-2:]
                f.write(HEADER.pack(MAGIC, width, height))
                f.write(image.permute(1, 2, 0).contiguous().numpy().data)
        except OSError as err:
            self.writable = False
            log.warning(
                f"decoded-image cache disabled, cannot write {entry.parent} ({err.strerror or err}); "
                "set data.decoded_cache=false or point data.cache_dir to a writable folder"
            )
