"""Reading journals back: damaged, foreign or missing ones are refused with the fix."""

import json

import pytest

from detective.label.journal import read_journal
from detective.label.results import LabelError
from tests.label.helpers import write_journal


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": 1, "old": "../outside.jpg", "new": "x.jpg"}], "outside its folder"),
        ([{"id": 1, "old": "/etc/passwd", "new": "x.jpg"}], "outside its folder"),
        (["not json"], "damaged journal"),
    ],
)
def test_a_damaged_journal_is_refused(tmp_path, lines, message):
    path = write_journal(tmp_path, [])
    path.write_text(path.read_text() + "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(LabelError, match=message):
        read_journal(path)


def test_not_a_journal_or_missing_is_refused(tmp_path):
    with pytest.raises(LabelError, match="journal not found"):
        read_journal(tmp_path / "nope.jsonl")
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(LabelError, match=r"not a label\.py journal"):
        read_journal(tmp_path / "x.jsonl")
