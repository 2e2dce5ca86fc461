from detective.data.geometry import center_box, shorter_side_size


def test_shorter_side_keeps_the_aspect_ratio_and_never_goes_below_the_size():
    assert shorter_side_size(480, 640, 256) == (256, 341)
    assert shorter_side_size(900, 300, 73) == (219, 73)
    assert shorter_side_size(1, 1000, 37) == (37, 37000)
    assert shorter_side_size(5, 7, 73) == (73, 102)  # up: the shorter side reaches the size too


def test_center_box_is_centered_rounding_down():
    assert center_box(256, 341, 224) == (16, 58)
    assert center_box(73, 73, 64) == (4, 4)
    assert center_box(64, 64, 64) == (0, 0)
