"""Decode image files into plain 8-bit RGB PIL images, or refuse them with one clear line.

Training and prediction both go through `load_rgb`, so every file is seen the same way: EXIF
orientation applied, transparency composited on white, high-bit-depth grayscale scaled (not
clipped) to 8 bits, the first frame of animations. Big JPEGs are decoded at a reduced scale
(`Image.draft`) when the caller only needs a small image, which makes phone photos cheap.

A file that cannot be read raises `ImageDecodeError` (path + reason) and nothing else, so the
dataset can report and exclude it instead of dying mid-epoch. Global Pillow state is left alone:
truncated files stay errors (`ImageFile.LOAD_TRUNCATED_IMAGES` is never set), and the
decompression-bomb limit is Pillow's own `Image.MAX_IMAGE_PIXELS` (about 89.5 Mpx by default),
read at each call. We refuse above that limit, where Pillow itself would only warn up to twice it
(its DecompressionBombWarning still prints there: changing warning filters is global and not thread-safe).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

# The formats behind `labels.IMAGE_EXTENSIONS` (JPEG includes camera files Pillow reports as MPO).
# The format comes from the content, so a PNG named `.jpg` still reads; restricting it keeps odd
# files away from rarely used parsers (EPS would even start Ghostscript).
READ_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

ImageSource = str | os.PathLike[str] | bytes | BinaryIO | Image.Image

_BOMB = "decompression bomb refused: "

T = TypeVar("T")

_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Full-scale values a high-bit-depth image without a declared depth ("I", "F") is most likely to use.
_FULL_SCALES = (1.0, 255.0, 65535.0)


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; `path` names it, `reason` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)  # both in `args`, so the error pickles across worker processes
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: cannot read image ({self.reason}); fix or remove the file"


def load_rgb(source: ImageSource, min_side: int | None = None) -> Image.Image:
    """Decode `source` into a new, fully loaded, upright 8-bit RGB image.

    With `min_side`, a JPEG at least twice that size is decoded at 1/2, 1/4 or 1/8 scale, its
    shorter side never below `min_side` (the caller resizes to exactly that). A PIL image is
    converted as it is; if it is a JPEG not yet loaded, `min_side` applies to it too.
    Raises `ImageDecodeError` for anything that cannot be read.
    """
    # The result must be a new image: the caller keeps its own, and ours gets closed with its file.
    return _decoded(source, min_side, lambda out, im: out.copy() if out is im else out)


def load_rgb_array(source: ImageSource, min_side: int | None = None) -> np.ndarray:
    """`load_rgb`'s pixels as a new (H, W, 3) uint8 array, read out before the file closes, so the image itself is
    never copied on the way (640x480 JPEG to tensor: 1.95 instead of 2.05 ms)."""
    return _decoded(source, min_side, lambda out, im: np.array(out))


def _decoded(source: ImageSource, min_side: int | None, take: Callable[[Image.Image, Image.Image], T]) -> T:
    """`take(decoded, opened)` while the source is open; every failure becomes an `ImageDecodeError`."""
    with _reported_as(_describe(source)):
        if isinstance(source, Image.Image):
            return take(_decode(source, min_side), source)
        with _open(source) as im:
            return take(_decode(im, min_side), im)


def probe(source: str | os.PathLike[str] | bytes | BinaryIO) -> tuple[str, tuple[int, int]]:
    """Format and (width, height) from the header alone, for scans and audits that must stay fast.

    The size is as stored, before EXIF orientation; some camera JPEGs report format "MPO".
    Refuses empty files, non-images and bombs; damage past the header (a truncated JPEG) only
    shows up in `load_rgb`.
    """
    with _reported_as(_describe(source)), _open(source) as im:
        _check_pixels(im.size)
        return im.format or "", im.size


def _describe(source: ImageSource) -> str:
    """How errors name the source: its path where it has one."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    return str(getattr(source, "name", "<file object>"))


@contextmanager
def _reported_as(name: str) -> Iterator[None]:
    """Turn any failure into `ImageDecodeError`: Pillow's plugins raise OSError, SyntaxError,
    ValueError, struct.error, zlib.error, ... on malformed data, and none of them may stop a run."""
    try:
        yield
    except Exception as e:
        raise ImageDecodeError(name, _reason(e)) from e


def _reason(e: Exception) -> str:
    """A short, one-line reason; Pillow's messages for unknown content repeat the path or a repr."""
    if isinstance(e, UnidentifiedImageError):
        return f"content is not {', '.join(READ_FORMATS[:-1])} or {READ_FORMATS[-1]}"
    if isinstance(e, Image.DecompressionBombError):  # Pillow refused first: over twice the limit
        return _BOMB + str(e).rstrip(".")
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return " ".join(str(e).split()) or type(e).__name__


def _open(source: str | os.PathLike[str] | bytes | BinaryIO) -> Image.Image:
    """Open lazily (header only), refusing empty input with a clearer reason than Pillow's."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ValueError("empty file, 0 bytes")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)) and os.path.getsize(source) == 0:
        raise ValueError("empty file, 0 bytes")
    return Image.open(source, formats=READ_FORMATS)


def _check_pixels(size: tuple[int, int]) -> None:
    """Refuse images with no pixels, or more than `Image.MAX_IMAGE_PIXELS` (a decompression bomb)."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"it is {width}x{height} pixels")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ValueError(
            f"{_BOMB}{width}x{height} is {width * height:,} pixels, over the limit of {limit:,} "
            "(PIL.Image.MAX_IMAGE_PIXELS)"
        )


def _decode(im: Image.Image, min_side: int | None) -> Image.Image:
    _check_pixels(im.size)
    if min_side is not None:
        im.draft("RGB", (min_side, min_side))  # a no-op unless `im` is a JPEG not yet loaded
    im.load()
    return _to_rgb(_upright(im))


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block costs the rotation, not the image."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return im
    method = _EXIF_TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_8bit_gray(im)
    if im.has_transparency_data:
        return _on_white(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def _on_white(im: Image.Image) -> Image.Image:
    """Composite on white: transparent areas would otherwise show whatever colour they hide."""
    rgba = im.convert("RGBA")
    out = Image.new("RGB", im.size, "white")
    out.paste(rgba, mask=rgba)
    return out


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit int or float grayscale to 8 bits; Pillow's own conversion clips at 255.

    16-bit modes use their declared range. "I" and "F" declare none, so the smallest usual full
    scale (1, 255 or 65535) holding the data is used, and data outside 0..65535 is stretched.
    """
    pixels = np.nan_to_num(np.asarray(im, dtype=np.float64))
    if im.mode.startswith("I;16"):
        full = 65535.0
    elif pixels.min() >= 0 and pixels.max() <= _FULL_SCALES[-1]:
        full = next(s for s in _FULL_SCALES if pixels.max() <= s)
    else:
        pixels = pixels - pixels.min()
        full = max(float(pixels.max()), 1.0)
    return Image.fromarray(np.rint(pixels * (255.0 / full)).astype(np.uint8))


def jpeg_recompress(img: Image.Image, quality: int) -> Image.Image:
    """`img` saved as a JPEG at `quality` in memory and decoded again: the compression an image meets online."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
