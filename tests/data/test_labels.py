import pytest

from detective.data.labels import (
    Label,
    LabelRule,
    is_ai_name,
    is_image_name,
    label_path,
    name_tokens,
    substring_rule_changes,
)

AI_NAMES = ["image_02_ai.jpg", "dog_ai_01.png", "AI-cat.webp", "cat.ai.jpg", "dog-AI2.png", "ai.jpg", "x (AI).JPEG"]
REAL_NAMES = [
    "portrait.jpg",
    "chair.png",
    "mountain.jpg",
    "said.jpg",
    "dog_vibe.png",
    "Thailand.jpg",
    "aircraft.jpg",
    "maison.ai",
    "photo_a_i.jpg",
]


@pytest.mark.parametrize("name", AI_NAMES)
def test_token_rule_marks_ai(name):
    assert is_ai_name(name)


@pytest.mark.parametrize("name", REAL_NAMES)
def test_token_rule_keeps_real(name):
    assert not is_ai_name(name)


def test_tokens_split_on_separators_and_letter_digit_edges():
    assert name_tokens("dog-AI2_x.y") == ["dog", "ai", "2", "x", "y"]
    assert name_tokens("Chat_généré_IA") == ["chat", "généré", "ia"]


def test_custom_token():
    assert is_ai_name("cat_gen_3.png", token="gen")
    assert not is_ai_name("cat_ai_3.png", token="gen")
    assert not is_ai_name("generic.png", token="gen")
    assert is_ai_name("cat-stable-diffusion-1.png", token="stable_diffusion")


def test_token_without_letters_is_refused():
    with pytest.raises(ValueError, match="no letters or digits"):
        is_ai_name("x.jpg", token="__")


def test_substring_rule_reproduces_the_original_and_counts_the_difference():
    assert is_ai_name("portrait.jpg", match="substring")
    assert is_ai_name("chair.png", match="substring")
    assert not is_ai_name("dog.png", match="substring")
    # portrait, chair, mountain, said, Thailand, aircraft: six names the old rule got wrong.
    assert substring_rule_changes(AI_NAMES + REAL_NAMES[:-2]) == 6
    assert substring_rule_changes(["a_ai.jpg", "b.jpg"]) == 0


def test_image_names():
    for name in ["a.jpg", "b.JPEG", "c.Png", "d.bmp", "e.webp", "f.gif", "g.tif", "h.TIFF"]:
        assert is_image_name(name)
    for name in [".hidden.jpg", "notes.txt", "jpg", "a.jpg.bak", ".DS_Store"]:
        assert not is_image_name(name)


def test_subject_from_folder_and_source_from_name():
    assert label_path(("cat", "img_ai.jpg")) == Label("cat", True)
    assert label_path(("cat", "nested", "deeper", "chair.jpg")) == Label("cat", False)
    assert label_path(("loose.jpg",)) is None


@pytest.mark.parametrize(
    ("folder", "is_ai"), [("real", False), ("ai", True), ("0_real", False), ("1_fake", True), ("AI", True)]
)
def test_source_folder_layouts(folder, is_ai):
    label = label_path(("dog", folder, "x.jpg"))
    assert label == Label("dog", is_ai, from_folder=True)


def test_folder_wins_over_name_and_disagreement_is_flagged():
    assert label_path(("dog", "real", "x_ai.jpg")) == Label("dog", False, from_folder=True, name_disagrees=True)
    # An untagged name in an AI folder is normal, not a disagreement.
    assert label_path(("dog", "1_fake", "x.jpg")).name_disagrees is False


def test_source_folder_names_are_configurable():
    rule = LabelRule(real_folders=("nature",), ai_folders=("synthetic",))
    assert label_path(("dog", "synthetic", "x.jpg"), rule).is_ai
    assert not label_path(("dog", "nature", "x_ai.jpg"), rule).is_ai
    assert label_path(("dog", "ai", "x.jpg"), rule) == Label("dog", False)  # "ai" is now a plain folder


def test_split_layout():
    assert label_path(("train", "cat", "a_ai.png"), split_layout=True) == Label("cat", True, "train")
    assert label_path(("Val", "dog", "real", "b.png"), split_layout=True) == Label("dog", False, "val", True)
    assert label_path(("other", "dog", "b.png"), split_layout=True) is None
    assert label_path(("test", "b.png"), split_layout=True) is None
