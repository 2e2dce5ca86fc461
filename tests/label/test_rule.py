"""The tag rule: where the tag goes, what counts as tagged, untagging, and tags refused."""

import pytest
from hypothesis import given

from detective.data.labels import is_ai_name, is_image_name
from detective.label.results import LabelError
from detective.label.rule import TagRule
from tests.label.helpers import RULE, image_names


@pytest.mark.parametrize(
    ("name", "tagged"),
    [("img_01.jpg", "img_01_ai.jpg"), ("a.b.JPEG", "a.b_ai.JPEG"), ("my photo é.png", "my photo é_ai.png")],
)
def test_tag_goes_before_the_extension_which_keeps_its_case(name, tagged):
    assert RULE.tagged(name) == tagged


@pytest.mark.parametrize("name", ["x_ai.jpg", "x-AI.png", "cat.ai.jpg", "AI-cat.webp", "x (AI).gif"])
def test_names_with_the_dataset_token_count_as_tagged(name):
    assert RULE.is_tagged(name)


@pytest.mark.parametrize("name", ["portrait.jpg", "chair.png", "said.jpg", "x_a_i.jpg"])
def test_names_without_the_token_are_not_tagged(name):
    assert not RULE.is_tagged(name)


@pytest.mark.parametrize(
    ("name", "untagged"),
    [
        ("x_ai.jpg", "x.jpg"),
        ("x-AI.png", "x.png"),
        ("x_AI.JPG", "x.JPG"),
        ("cat.ai.jpg", "cat.jpg"),
        ("dog - ai.png", "dog.png"),
        ("x__ai.jpg", "x_.jpg"),  # exactly the tag is removed, so untag inverts a tag of `x_.jpg`
        ("AI-cat.jpg", None),  # the token is not at the end
        ("x (ai).png", None),
        ("x_ai_2.png", None),
        ("_ai.jpg", None),  # nothing visible would be left
    ],
)
def test_untag_removes_only_a_trailing_tag(name, untagged):
    assert RULE.untagged(name) == untagged


def test_the_token_comes_from_the_tag_unless_given():
    assert TagRule("_gen").token == "gen"
    assert TagRule("-Gen2").recognised("x-gen2.png")
    assert TagRule("_gen", token="ai").token == "ai"


@pytest.mark.parametrize("tag", ["ai", "_", "_a/i", ""])
def test_unusable_tags_are_refused_with_the_fix(tag):
    with pytest.raises(LabelError, match="tag"):
        TagRule(tag)


@given(image_names)
def test_any_image_name_tagged_with_the_default_tag_is_read_as_ai(name):
    tagged = RULE.tagged(name)
    assert is_image_name(tagged)
    assert is_ai_name(tagged)
    assert RULE.is_tagged(tagged)


@given(image_names)
def test_untag_inverts_tag(name):
    if not RULE.is_tagged(name):
        assert RULE.untagged(RULE.tagged(name)) == name
