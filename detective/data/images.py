"""Decode image files into plain 8-bit RGB (a numpy array or a PIL image), or refuse them with one clear line.

Training and prediction both decode through `load_rgb_array` (via `transforms.load_image`); `load_rgb` gives the
same pixels as a PIL image. Every file is seen the same way: EXIF orientation applied, transparency composited on
white, high-bit-depth grayscale scaled (not clipped) to 8 bits, the first frame of animations. Big JPEGs are
decoded at a reduced scale (`Image.draft`) when the caller only needs a small image, which makes phone photos cheap.

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
from PIL import Image, ImageOps, UnidentifiedImageError

# The formats behind `labels.IMAGE_EXTENSIONS` (JPEG includes camera files Pillow reports as MPO).
# The format comes from the content, so a PNG named `.jpg` still reads; restricting it keeps odd
# files away from rarely used parsers (EPS would even start Ghostscript).
READ_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

ImageSource = str | os.PathLike[str] | bytes | BinaryIO | Image.Image

_BOMB = "decompression bomb refused: "

T = TypeVar("T")

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
    never copied on the way: the decoding path of training and prediction."""
    return _decoded(source, min_side, lambda out, im: np.array(out))


def _decoded(source: ImageSource, min_side: int | None, take: Callable[[Image.Image, Image.Image], T]) -> T:
    """`take(decoded, opened)` while the source is open; every failure becomes an `ImageDecodeError`."""
    with _reported_as(_describe(source)):
        if isinstance(source, Image.Image):
            return take(_decode(source, min_side, own=False), source)
        with _open(source) as im:
            return take(_decode(im, min_side, own=True), im)


def probe(source: str | os.PathLike[str] | bytes | BinaryIO) -> tuple[str, tuple[int, int]]:
    """Format and (width, height) from the header alone, for scans and audits that must stay fast.

    The size is as stored, before EXIF orientation; some camera JPEGs report format "MPO".
    Refuses empty files, non-images and bombs; damage past the header (a truncated JPEG) only
    shows up when decoding.
    """
    with opened_header(source) as im:
        return im.format or "", im.size


@contextmanager
def opened_header(source: str | os.PathLike[str] | bytes | BinaryIO) -> Iterator[Image.Image]:
    """The image opened lazily (header parsed, pixels not decoded) and checked like `probe`; any failure inside
    the block, reading the header's facts included, becomes an `ImageDecodeError` naming the source."""
    with _reported_as(_describe(source)), _open(source) as im:
        _check_pixels(im.size)
        yield im


# libjpeg's (IJG) standard luminance quantization table, in natural (row-major) order like Pillow's `quantization`.
_IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
).ravel()


def _ijg_tables() -> np.ndarray:
    """The luminance table libjpeg writes at each quality 1..100 (row q-1), as `jpeg_set_quality` scales it."""
    quality = np.arange(1, 101)[:, None]
    scale = np.where(quality < 50, 5000 // quality, 200 - 2 * quality)
    return np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255)


_QUALITY_TABLES = _ijg_tables()


def jpeg_quality(im: Image.Image) -> int | None:
    """The libjpeg quality (1..100) whose luminance table is closest to the file's, or None for a non-JPEG.

    Read from the header (`Image.open` parses the tables; nothing is decoded). Exact for files written by
    libjpeg-based encoders (Pillow, most software); for an encoder with its own tables (many cameras) it is
    the nearest IJG equivalent; of two equally near, the lower quality, so that a file never reads as less
    compressed than its table allows (the audit's shortcut check and the evaluation's quality slices both use this).
    None too for a luminance table that is not 8x8.
    """
    tables = getattr(im, "quantization", None)
    if not tables:
        return None
    luminance = np.asarray(tables[min(tables)], dtype=np.int64)  # table 0 by the usual (JFIF) convention
    if luminance.shape != (64,):
        return None
    return int(np.abs(_QUALITY_TABLES - luminance).sum(axis=1).argmin()) + 1  # argmin: the first, lowest, of ties


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


def _decode(im: Image.Image, min_side: int | None, own: bool) -> Image.Image:
    """`im` loaded, upright and RGB; `own`: we opened it, so it may be changed in place (never the caller's)."""
    _check_pixels(im.size)
    if min_side is not None:
        im.draft("RGB", (min_side, min_side))  # a no-op unless `im` is a JPEG not yet loaded
    im.load()
    return _to_rgb(_upright(im, own))


def _upright(im: Image.Image, own: bool) -> Image.Image:
    """Apply the EXIF orientation and drop its tag (so nothing downstream turns the image twice); a broken EXIF
    block costs the rotation, not the image. In place where allowed: otherwise an upright image is copied."""
    try:
        if not own:
            return ImageOps.exif_transpose(im)
        ImageOps.exif_transpose(im, in_place=True)
    except Exception:
        pass
    return im


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
