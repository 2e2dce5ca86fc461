"""Every kind of image file decodes to upright 8-bit RGB; every unreadable one is refused with its path."""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from detective.data.images import ImageDecodeError, load_rgb, load_rgb_array, probe

W, H = 64, 40  # non-square, so a transposed result shows in its size
RED, GREEN = (255, 0, 0), (0, 255, 0)


def gradient(dtype: type = np.uint8, full: float = 255) -> np.ndarray:
    """A (H, W) ramp from 0 at the left to `full` at the right."""
    return np.tile(np.linspace(0, full, W), (H, 1)).astype(dtype)


def gray(mode: str) -> Image.Image:
    return Image.fromarray(gradient()).convert(mode)


def rgb_gradient() -> Image.Image:
    return Image.fromarray(np.stack([gradient()] * 3, axis=-1))


# Each writes a left-to-right dark-to-bright gradient in one mode/format to `path`.
GRADIENT_WRITERS: dict[str, Callable[[Path], None]] = {
    "rgb.jpg": lambda p: rgb_gradient().save(p, quality=95),
    "gray.jpg": lambda p: gray("L").save(p, quality=95),
    "cmyk.jpg": lambda p: rgb_gradient().convert("CMYK").save(p, quality=95),
    "gray.png": lambda p: gray("L").save(p),
    "gray_alpha.png": lambda p: gray("LA").save(p),
    "bilevel.png": lambda p: gray("1").save(p),
    "palette.png": lambda p: rgb_gradient().convert("P").save(p),
    "rgba.png": lambda p: rgb_gradient().convert("RGBA").save(p),
    "gray16.png": lambda p: Image.fromarray(gradient(np.uint16, 65535)).save(p),
    "int32.tif": lambda p: Image.fromarray(gradient(np.int32, 65535)).save(p),
    "float01.tif": lambda p: Image.fromarray(gradient(np.float32, 1.0)).save(p),
    "lab.tif": lambda p: rgb_gradient().convert("LAB").save(p),
    "rgb.bmp": lambda p: rgb_gradient().save(p),
    "rgb.webp": lambda p: rgb_gradient().save(p, lossless=True),
    "palette.gif": lambda p: rgb_gradient().convert("P").save(p),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_WRITERS))
def test_every_kind_decodes_to_rgb_keeping_its_gradient(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    GRADIENT_WRITERS[name](path)
    out = load_rgb(path)
    pixels = np.asarray(out)
    assert out.mode == "RGB"
    assert pixels.shape == (H, W, 3)
    assert pixels.dtype == np.uint8
    # Not clipped to white (16/32-bit, float), not inverted (CMYK), not flattened to black.
    thirds = [pixels[:, i * W // 3 : (i + 1) * W // 3].mean() for i in range(3)]
    assert thirds[0] < 70 and 90 < thirds[1] < 165 and thirds[2] > 185, thirds


@pytest.mark.parametrize("name", sorted(GRADIENT_WRITERS))
def test_the_array_form_has_the_same_pixels_in_memory_of_its_own(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    GRADIENT_WRITERS[name](path)
    pixels = load_rgb_array(path)
    assert np.array_equal(pixels, np.asarray(load_rgb(path)))
    assert pixels.dtype == np.uint8 and pixels.flags.writeable and pixels.flags.c_contiguous


def test_16_bit_png_keeps_every_level_it_can(tmp_path: Path) -> None:
    Image.fromarray(gradient(np.uint16, 65535)).save(tmp_path / "g.png")
    row = np.asarray(load_rgb(tmp_path / "g.png"))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert len(np.unique(row)) == W


def write_with_orientation(path: Path, orientation: int) -> None:
    """A landscape image with a red block in its stored top-left corner and an EXIF orientation tag."""
    im = Image.new("RGB", (W, H), (0, 0, 255))
    im.paste(RED, (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}))


# Per EXIF orientation (the EXIF spec's table): where the stored top-left corner shows once the image is upright,
# and whether width and height swap. Each of the 8 gives a different pair, so any wrong transposition shows.
UPRIGHT = {
    1: ("top-left", False),
    2: ("top-right", False),
    3: ("bottom-right", False),
    4: ("bottom-left", False),
    5: ("top-left", True),
    6: ("top-right", True),
    7: ("bottom-right", True),
    8: ("bottom-left", True),
}


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str, orientation: int) -> None:
    path = tmp_path / f"o{orientation}{suffix}"
    write_with_orientation(path, orientation)
    out = load_rgb(path)
    corner_after, swapped = UPRIGHT[orientation]
    assert out.size == ((H, W) if swapped else (W, H))
    w, h = out.size
    vertical, horizontal = corner_after.split("-")
    corner = (3 if horizontal == "left" else w - 4, 3 if vertical == "top" else h - 4)
    r, g, b = out.getpixel(corner)
    assert r > 200 and b < 60, (corner, (r, g, b))
    assert out.getexif().get(ExifTags.Base.Orientation, 1) == 1  # saved again, no viewer turns it a second time


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_a_broken_exif_block_costs_the_rotation_not_the_image(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    im = Image.new("RGB", (W, H), (0, 0, 255))
    im.paste(RED, (0, 0, 12, 12))
    im.save(path, exif=b"not a TIFF header", **({"lossless": True} if suffix == ".webp" else {}))
    with pytest.raises(SyntaxError), Image.open(path) as stored:
        stored.getexif()  # the EXIF block really is unreadable
    out = load_rgb(path)
    assert out.size == (W, H)
    assert out.getpixel((3, 3)) == RED and out.getpixel((W - 4, H - 4)) == (0, 0, 255)


def transparent_corner(mode: str) -> Image.Image:
    """Black everywhere, fully transparent at (0, 0) (the hidden colour there is black too)."""
    im = Image.new("RGBA", (W, H), (0, 0, 0, 255))
    im.putpixel((0, 0), (0, 0, 0, 0))
    return im.convert(mode)


def palette_with_transparency() -> Image.Image:
    im = Image.new("P", (W, H), 1)
    im.putpalette([0, 0, 0] * 256)
    im.putpixel((0, 0), 0)
    im.info["transparency"] = 0
    return im


def rgb_with_transparent_colour(path: Path) -> None:
    im = Image.new("RGB", (W, H), (0, 0, 0))
    im.putpixel((0, 0), (0, 0, 1))
    im.save(path, transparency=(0, 0, 1))


TRANSPARENT_WRITERS: dict[str, Callable[[Path], None]] = {
    "rgba.png": lambda p: transparent_corner("RGBA").save(p),
    "gray_alpha.png": lambda p: transparent_corner("LA").save(p),
    "rgba.webp": lambda p: transparent_corner("RGBA").save(p, lossless=True),
    "palette.png": lambda p: palette_with_transparency().save(p),
    "palette.gif": lambda p: palette_with_transparency().save(p),
    "rgb_trns.png": rgb_with_transparent_colour,
}


@pytest.mark.parametrize("name", sorted(TRANSPARENT_WRITERS))
def test_transparency_is_composited_on_white(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    TRANSPARENT_WRITERS[name](path)
    out = load_rgb(path)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((5, 5)) == (0, 0, 0)


def test_half_transparent_black_becomes_mid_gray() -> None:
    out = load_rgb(Image.new("RGBA", (4, 4), (0, 0, 0, 128)))
    assert all(abs(c - 127) <= 1 for c in out.getpixel((0, 0)))


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".tif"])
def test_animation_gives_its_first_frame(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"anim{suffix}"
    red, green = Image.new("RGB", (W, H), RED), Image.new("RGB", (W, H), GREEN)
    red.save(path, save_all=True, append_images=[green], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    r, g, _ = load_rgb(path).getpixel((W // 2, H // 2))
    assert r > 200 and g < 60


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1600x1200 photo-like JPEG: large enough for 1/8-scale decoding."""
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    y, x = np.mgrid[0:1200, 0:1600]
    pixels = np.stack([x * 255 // 1600, y * 255 // 1200, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.mark.parametrize("min_side", [1, 100, 150, 151, 299, 300, 599, 600, 601, 1200])
def test_large_jpeg_is_decoded_small_but_never_below_min_side(big_jpeg: Path, min_side: int) -> None:
    out = load_rgb(big_jpeg, min_side=min_side)
    # The smallest of the JPEG decoder's scales (1/8, 1/4, 1/2, 1) that still covers min_side.
    expected = next((1200 // s for s in (8, 4, 2) if 1200 // s >= min_side), 1200)
    assert min(out.size) == expected >= min(min_side, 1200)
    assert out.size[0] * 3 == out.size[1] * 4  # the aspect ratio survives


def test_draft_decode_is_much_smaller_and_still_the_same_picture(big_jpeg: Path) -> None:
    small = load_rgb(big_jpeg, min_side=100)
    assert small.size == (200, 150)
    full = load_rgb(big_jpeg).resize(small.size, Image.Resampling.BOX)
    assert np.abs(np.asarray(small, dtype=int) - np.asarray(full, dtype=int)).mean() < 3


def test_no_min_side_or_a_small_image_decodes_at_full_size(big_jpeg: Path) -> None:
    assert load_rgb(big_jpeg).size == (1600, 1200)
    assert load_rgb(big_jpeg, min_side=5000).size == (1600, 1200)


def test_draft_decode_follows_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (1600, 1200), GREEN).save(path, exif=exif)
    assert load_rgb(path, min_side=100).size == (150, 200)


def test_bytes_file_objects_and_pil_images_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "o.jpg"
    write_with_orientation(path, 6)
    data = path.read_bytes()
    with path.open("rb") as f:
        from_file = load_rgb(f)
    lazy = Image.open(path)
    results = [load_rgb(str(path)), load_rgb(data), load_rgb(bytearray(data)), load_rgb(io.BytesIO(data)), from_file]
    results.append(load_rgb(lazy))
    for out in results:
        assert (out.mode, out.size) == ("RGB", (H, W))
        assert out.getpixel((H - 4, 3))[0] > 200
    assert lazy.size == (W, H) and lazy.getexif()[ExifTags.Base.Orientation] == 6  # the caller's, not turned


def test_a_pil_image_is_left_as_the_caller_had_it() -> None:
    mine = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    out = load_rgb(mine)
    assert out is not mine and mine.mode == "RGBA"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    already_rgb = Image.new("RGB", (W, H), RED)
    out = load_rgb(already_rgb)
    out.putpixel((0, 0), GREEN)
    assert already_rgb.getpixel((0, 0)) == RED


def test_the_result_outlives_its_file(tmp_path: Path) -> None:
    path = tmp_path / "a.gif"
    Image.new("RGB", (W, H), RED).save(path, save_all=True, append_images=[Image.new("RGB", (W, H), GREEN)])
    out = load_rgb(path)
    path.unlink()
    assert out.getpixel((0, 0))[0] > 200


def test_a_png_named_jpg_is_read_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "actually_png.jpg"
    rgb_gradient().save(path, format="PNG")
    assert probe(path) == ("PNG", (W, H))
    assert load_rgb(path).size == (W, H)


def truncated_jpeg(path: Path) -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (H * 4, W * 4, 3), dtype=np.uint8)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def truncated_png(path: Path) -> None:
    buf = io.BytesIO()
    rgb_gradient().save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[:-40])


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb as far as its header goes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


BAD_WRITERS: dict[str, Callable[[Path], object]] = {
    "empty.jpg": lambda p: p.write_bytes(b""),
    "truncated.jpg": truncated_jpeg,
    "truncated.png": truncated_png,
    "notes.jpg": lambda p: p.write_text("this is not a picture\n"),
    "noise.png": lambda p: p.write_bytes(np.random.default_rng(1).bytes(2048)),
    "image.ppm.jpg": lambda p: p.write_bytes(b"P6\n2 2\n255\n" + bytes(12)),  # a format the data set does not take
    "bomb.png": lambda p: p.write_bytes(png_header_claiming(100_000, 100_000)),
}


@pytest.mark.parametrize("min_side", [None, 8])
@pytest.mark.parametrize("name", sorted(BAD_WRITERS))
def test_unreadable_files_raise_one_clear_error_naming_them(tmp_path: Path, name: str, min_side: int | None) -> None:
    path = tmp_path / name
    BAD_WRITERS[name](path)
    with pytest.raises(ImageDecodeError, match=path.name):
        load_rgb_array(path, min_side=min_side)
    with pytest.raises(ImageDecodeError) as caught:
        load_rgb(path, min_side=min_side)
    err = caught.value
    assert err.path == str(path)
    assert str(err).startswith(f"{path}: cannot read image (")
    assert "\n" not in str(err) and err.reason


def test_a_missing_file_is_an_image_error_too(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match=r"missing\.jpg: .*No such file"):
        load_rgb(tmp_path / "missing.jpg")


def test_reasons_say_what_is_wrong(tmp_path: Path) -> None:
    for name, reason in [
        ("empty.jpg", "empty file"),
        ("notes.jpg", "content is not JPEG"),
        ("truncated.jpg", "truncated"),
        ("bomb.png", "decompression bomb refused"),
    ]:
        BAD_WRITERS[name](tmp_path / name)
        with pytest.raises(ImageDecodeError, match=reason):
            load_rgb(tmp_path / name)


def test_bytes_sources_are_named_in_errors() -> None:
    with pytest.raises(ImageDecodeError, match=r"^<bytes>: cannot read image \(empty file"):
        load_rgb(b"")
    with pytest.raises(ImageDecodeError, match=r"^<bytes>: .*decompression"):
        load_rgb(png_header_claiming(100_000, 100_000))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [12, 20])  # 144 px: Pillow only warns; 400 px: Pillow raises
def test_images_over_the_pixel_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for check in (load_rgb, probe):
        with pytest.raises(ImageDecodeError, match="decompression bomb refused"):
            check(path)


def test_truncated_files_stay_errors_after_import() -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_probe_reads_format_and_size_from_the_header(tmp_path: Path, big_jpeg: Path) -> None:
    GRADIENT_WRITERS["gray16.png"](tmp_path / "g.png")
    GRADIENT_WRITERS["rgb.webp"](tmp_path / "g.webp")
    write_with_orientation(tmp_path / "o.jpg", 6)
    assert probe(big_jpeg) == ("JPEG", (1600, 1200))
    assert probe(tmp_path / "g.png") == ("PNG", (W, H))
    assert probe((tmp_path / "g.webp").read_bytes()) == ("WEBP", (W, H))
    assert probe(tmp_path / "o.jpg") == ("JPEG", (W, H))  # as stored, before orientation


@pytest.mark.parametrize("name", ["empty.jpg", "notes.jpg", "noise.png", "image.ppm.jpg", "bomb.png"])
def test_probe_refuses_files_that_are_not_images(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    BAD_WRITERS[name](path)
    with pytest.raises(ImageDecodeError) as caught:
        probe(path)
    assert caught.value.path == str(path)


def test_probe_does_not_read_past_the_header(tmp_path: Path) -> None:
    truncated_jpeg(tmp_path / "t.jpg")
    assert probe(tmp_path / "t.jpg") == ("JPEG", (W * 4, H * 4))


def test_decode_errors_survive_a_trip_to_another_process() -> None:
    err = pickle.loads(pickle.dumps(ImageDecodeError("a/b.jpg", "empty file, 0 bytes")))
    assert (err.path, err.reason) == ("a/b.jpg", "empty file, 0 bytes")
    assert str(err) == "a/b.jpg: cannot read image (empty file, 0 bytes); fix or remove the file"
