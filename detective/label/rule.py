"""The tag rule: which text `label.py` adds to a name, and whether the dataset then reads the name as AI."""

from __future__ import annotations

import os
from dataclasses import dataclass

from detective.data.labels import is_ai_name, is_image_name, name_tokens, split_extension
from detective.label.results import LabelError

DEFAULT_TAG = "_ai"


def default_token(tag: str) -> str:
    """The dataset token that a tag writes: `_ai` -> `ai`, `-Gen2` -> `gen_2`."""
    return "_".join(name_tokens(tag))


@dataclass(frozen=True)
class TagRule:
    """The tag that `label.py` adds, and the token the dataset looks for (derived from the tag unless given)."""

    tag: str = DEFAULT_TAG
    token: str = ""

    def __post_init__(self) -> None:
        if any(sep and sep in self.tag for sep in ("/", "\0", os.sep, os.altsep)):
            raise LabelError(f"the tag {self.tag!r} contains a path separator; use letters, digits, '_' or '-'")
        if not name_tokens(self.tag):
            raise LabelError(f"the tag {self.tag!r} has no letters or digits; use one like '_ai' or '_gen'")
        if self.tag[0].isalnum():
            # Without a separator the tag would glue onto the last word (`photo` -> `photoai`), which no token rule
            # can see, and untagging could not tell a tag from the end of a word (`Thai`).
            raise LabelError(f"the tag {self.tag!r} must start with a separator such as '_' or '-', e.g. '_{self.tag}'")
        if not self.token:
            object.__setattr__(self, "token", default_token(self.tag))
        elif not name_tokens(self.token):
            raise LabelError(f"the token {self.token!r} has no letters or digits; use one like 'ai' or 'gen'")

    def recognised(self, name: str) -> bool:
        """Whether the dataset reads `name` as AI (its token rule, with this token)."""
        return is_ai_name(name, self.token)

    def is_tagged(self, name: str) -> bool:
        """Already tagged: the dataset sees the token (`x_ai.jpg`, `x-AI.png`), or the stem ends with the tag."""
        return self.recognised(name) or self._ends_with_tag(split_extension(name)[0])

    def tagged(self, name: str) -> str:
        """`img_01.jpg` -> `img_01_ai.jpg`: the tag goes before the extension, which keeps its case."""
        stem, ext = split_extension(name)
        return stem + self.tag + ext

    def untagged(self, name: str) -> str | None:
        """The name without its trailing tag, or None when no tag ends the stem (`AI-cat.jpg`, `x (ai).png`).

        The tag itself is stripped exactly (so untagging inverts tagging), else a separator run plus the token
        at the very end (`x-AI.png` -> `x.png`). None too when nothing visible would be left (`_ai.jpg`).
        """
        stem, ext = split_extension(name)
        base = stem[: -len(self.tag)] if self._ends_with_tag(stem) else self._strip_token(stem)
        if base is None or not is_image_name(base + ext):
            return None
        return base + ext

    def _ends_with_tag(self, stem: str) -> bool:
        return len(stem) > len(self.tag) and stem[-len(self.tag) :].casefold() == self.tag.casefold()

    def _strip_token(self, stem: str) -> str | None:
        """`stem` minus a trailing `<separators><token>`; the cut must fall on a token boundary of the dataset rule."""
        needle = name_tokens(self.token)
        if not stem or not stem[-1].isalnum():
            return None
        # Token characters are exactly the `isalnum` ones, so a separator run starts where alnum meets non-alnum.
        for i in range(len(stem) - 1, 0, -1):
            if stem[i].isalnum() or not stem[i - 1].isalnum():
                continue
            tail = name_tokens(stem[i:])
            if tail == needle:
                return stem[:i]
            if len(tail) >= len(needle):
                return None
        return None
