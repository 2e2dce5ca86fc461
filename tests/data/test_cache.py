import os

import pytest
import torch

from detective.data import cache as cache_module
from detective.data.cache import DecodedCache, default_cache_dir
from detective.data.dataset import ImageDataset
from detective.data.images import ImageDecodeError
from detective.data.scan import Sample
from detective.data.transforms import eval_transform, resize_size
from detective.data.views import Views
from tests.helpers import write_image


def entries(folder) -> list:
    return sorted(folder.rglob("*.rgb"))


@pytest.fixture
def photos(tmp_path):
    """A wide JPEG, a tall PNG and a big JPEG (decoded at reduced scale), all larger than the cache side."""
    return [
        write_image(tmp_path / "src" / "wide.jpg", (300, 180), seed=1),
        write_image(tmp_path / "src" / "tall.png", (90, 200), seed=2),
        write_image(tmp_path / "src" / "big.jpg", (1600, 1200), seed=3),
    ]


def test_cached_epochs_see_exactly_the_pixels_of_uncached_ones(tmp_path, photos):
    side = resize_size(64)
    samples = [Sample(path=p, subject="x", is_ai=False) for p in photos]
    views = Views(eval_transform(64), None, side)
    plain = ImageDataset(samples, ["x"], views)
    cached = ImageDataset(samples, ["x"], views, cache=DecodedCache(tmp_path / "cache", side))
    for epoch in range(2):  # the first fills the cache, the second reads it
        for i in range(len(samples)):
            assert torch.equal(cached[i][0], plain[i][0]), (epoch, photos[i].name)
    stored = [DecodedCache(tmp_path / "cache", side)._read(e) for e in entries(tmp_path / "cache")]
    assert len(stored) == 3 and all(min(im.shape[-2:]) == side for im in stored)


def test_a_cached_image_is_not_decoded_again(tmp_path, photos, monkeypatch):
    cache = DecodedCache(tmp_path / "cache", 32)
    first = torch.clone(cache.load(photos[0]))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_module, "load_image", no_decoding)
    assert torch.equal(torch.clone(DecodedCache(tmp_path / "cache", 32).load(photos[0])), first)  # a later run


def test_an_edited_image_is_decoded_again(tmp_path, photos):
    cache = DecodedCache(tmp_path / "cache", 32)
    before = torch.clone(cache.load(photos[0]))
    write_image(photos[0], (300, 180), seed=99)
    os.utime(photos[0], ns=(1, 1))  # a different modification time, as an editor would leave
    after = torch.clone(cache.load(photos[0]))
    assert not torch.equal(before, after)
    assert len(entries(tmp_path / "cache")) == 2


def test_a_damaged_entry_is_replaced(tmp_path, photos):
    cache = DecodedCache(tmp_path / "cache", 32)
    good = torch.clone(cache.load(photos[1]))
    (entry,) = entries(tmp_path / "cache")
    entry.write_bytes(entry.read_bytes()[:50])  # torn by something other than detective
    assert torch.equal(torch.clone(cache.load(photos[1])), good)
    assert torch.equal(torch.clone(cache._read(entry)), good)


def test_an_unwritable_cache_warns_once_and_training_goes_on(tmp_path, photos, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = DecodedCache(blocker, 32)
    images = [cache.load(p) for p in photos]
    assert all(min(im.shape[-2:]) == 32 for im in images)
    assert caplog.text.count("decoded-image cache disabled") == 1 and "data.decoded_cache=false" in caplog.text


def test_unreadable_sources_fail_as_decode_errors_naming_the_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    cache = DecodedCache(tmp_path / "cache", 32)
    for path in (broken, tmp_path / "gone.jpg"):
        with pytest.raises(ImageDecodeError, match=path.name):
            cache.load(path)
    assert not entries(tmp_path / "cache")


def test_default_cache_dir_follows_env_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTIVE_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("DETECTIVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "detective"
