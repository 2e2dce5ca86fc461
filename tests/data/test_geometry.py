import pytest

from detective.data.geometry import ViewSettings, center_box, crop_grid, grid_shape, shorter_side_size


def test_shorter_side_keeps_the_aspect_ratio_and_never_goes_below_the_size():
    assert shorter_side_size(480, 640, 256) == (256, 341)
    assert shorter_side_size(900, 300, 73) == (219, 73)
    assert shorter_side_size(1, 1000, 37) == (37, 37000)
    assert shorter_side_size(5, 7, 73) == (73, 102)  # up: the shorter side reaches the size too


def test_center_box_is_centered_rounding_down():
    assert center_box(256, 341, 224) == (16, 58)
    assert center_box(73, 73, 64) == (4, 4)
    assert center_box(64, 64, 64) == (0, 0)


def test_the_crop_grid_covers_the_image_within_the_cap_and_stays_inside_it():
    assert crop_grid(64, 48, 32, 16) == [(0, 0), (32, 16), (32, 0), (0, 16)]  # 2 x 2, overlapping rows; diagonal first
    assert crop_grid(32, 32, 32, 16) == [(0, 0)]
    assert crop_grid(7, 5, 32, 16) == [(0, 0)]  # smaller than the crop: one, padded by the views
    assert grid_shape(640, 480, 48, 8) == (3, 2) and grid_shape(301, 900, 48, 8) == (2, 4)  # the aspect ratio
    for width, height, crop, cap in ((4032, 3024, 224, 16), (300, 2000, 64, 5), (100, 100, 33, 100)):
        boxes = crop_grid(width, height, crop, cap)
        assert 1 <= len(boxes) <= cap and len(set(boxes)) == len(boxes)
        assert all(0 <= x <= width - crop and 0 <= y <= height - crop for x, y in boxes)
        for offsets, span in (
            (sorted({x for x, _ in boxes}), width - crop),
            (sorted({y for _, y in boxes}), height - crop),
        ):
            assert offsets == [span // 2] if len(offsets) == 1 else offsets[0] == 0 and offsets[-1] == span  # spread
    with pytest.raises(ValueError, match="source_crops must be at least 1"):
        crop_grid(64, 64, 32, 0)


def test_view_settings_of_a_checkpoint_and_of_old_ones():
    hp = {"subjects": ["cat", "dog"], "image_size": 224, "crop_fraction": 0.875}
    old = ViewSettings.from_hparams(hp)  # before native crops: the source head read the downscaled view
    assert old == ViewSettings(224, 0.875, "resized", 224, 1, subject_head=True)
    assert old.takes_image and not old.native and old.decode_side == 256
    native = ViewSettings.from_hparams({**hp, "subjects": [], "source_view": "native", "source_crop": 96})
    assert not native.takes_image and native.decode_side is None and native.source_crops == 1
    assert ViewSettings.from_hparams({**hp, "source_view": "native"}).takes_image  # for the subject head
    with pytest.raises(ValueError, match=r"unknown data\.source_view 'sideways'"):
        ViewSettings.from_hparams({**hp, "source_view": "sideways"})
