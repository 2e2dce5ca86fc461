import io

from detective.progress import ProgressBar
from tests.helpers import FakeTerminal


def test_bar_draws_on_a_terminal_and_clears_for_messages():
    stream = FakeTerminal()
    bar = ProgressBar(3, stream, unit=" images")
    for _ in range(3):
        bar.advance()
    assert stream.getvalue().endswith("] 3/3 images")
    bar.clear()
    assert stream.getvalue().endswith("\r\033[K")


def test_no_bar_off_a_terminal_for_one_item_or_when_turned_off():
    assert not ProgressBar(100, io.StringIO()).enabled
    assert not ProgressBar(1, FakeTerminal()).enabled
    assert not ProgressBar(100, FakeTerminal(), enabled=False).enabled
