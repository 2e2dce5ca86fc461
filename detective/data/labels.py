"""Labels from paths: pure functions, no I/O.

Subject comes from the class folder, source (real or AI) from an optional source folder
(`real`/`ai`, `0_real`/`1_fake`) or else from a token in the file name. The original matched
`ai` as a bare substring, so `portrait.jpg` and `chair.png` counted as AI; here `ai` must be a
whole token of the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
SPLIT_NAMES = ("train", "val", "test")

# Runs of letters, or runs of digits: everything else separates tokens, and so does a
# letter/digit boundary (`AI2` -> `AI`, `2`). `[^\W\d_]` is "a letter" in any script.
_TOKEN_RE = re.compile(r"[^\W\d_]+|\d+")

MatchRule = Literal["token", "substring"]


def is_image_name(name: str) -> bool:
    """True for a visible file whose extension (any case) is one the dataset reads."""
    return not name.startswith(".") and split_extension(name)[1].lower() in IMAGE_EXTENSIONS


def split_extension(name: str) -> tuple[str, str]:
    """`a.b.jpg` -> (`a.b`, `.jpg`); a name with no dot, or only a leading one, has no extension."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def name_tokens(text: str) -> list[str]:
    """Lower-cased tokens of `text`: letters and digits, split at everything else and at letter/digit edges."""
    return [t.casefold() for t in _TOKEN_RE.findall(text)]


def has_token(stem: str, token: str) -> bool:
    """True when the tokens of `token` appear consecutively among the tokens of `stem`."""
    needle = name_tokens(token)
    if not needle:
        raise ValueError(f"the AI token {token!r} has no letters or digits; use one like 'ai' or 'gen'")
    hay = name_tokens(stem)
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def is_ai_name(name: str, token: str = "ai", match: MatchRule = "token") -> bool:
    """Whether a file name marks an AI-generated image.

    `match="token"` (the default) needs `token` as a whole token of the stem: `dog_ai_01.png`,
    `AI-cat.webp`, `cat.ai.jpg` are AI; `portrait.jpg`, `said.jpg`, `aircraft.jpg` are not.
    `match="substring"` is the original script's rule, kept for old data sets only.
    """
    stem = split_extension(name)[0]
    if match == "token":
        return has_token(stem, token)
    if match == "substring":
        return token.casefold() in stem.casefold()
    raise ValueError(f"unknown match rule {match!r}: use 'token' or 'substring'")


def substring_rule_changes(names: Iterable[str], token: str = "ai") -> int:
    """How many names the substring rule labels differently from the token rule (for a warning)."""
    return sum(is_ai_name(n, token, "substring") != is_ai_name(n, token, "token") for n in names)


@dataclass(frozen=True)
class LabelRule:
    """How paths become labels; every field is a config option (`data.labels.*`)."""

    token: str = "ai"
    match: MatchRule = "token"
    real_folders: tuple[str, ...] = ("real", "0_real")
    ai_folders: tuple[str, ...] = ("ai", "1_fake")

    def folder_source(self, folder: str) -> bool | None:
        """True/False when `folder` is an AI/real source folder (any case), None when it is neither."""
        key = folder.casefold()
        if key in {f.casefold() for f in self.ai_folders}:
            return True
        if key in {f.casefold() for f in self.real_folders}:
            return False
        return None


@dataclass(frozen=True)
class Label:
    """The labels of one image, as read from its path relative to the data root."""

    subject: str  # "" in the source-only layout
    is_ai: bool
    split: str | None = None  # "train"/"val"/"test" in the explicit split layout, else None
    from_folder: bool = False  # the source came from a real/ai folder, not the file name
    name_disagrees: bool = False  # the file name carries the AI token inside a real folder


def label_path(parts: Sequence[str], rule: LabelRule = LabelRule(), split_layout: bool = False) -> Label | None:
    """Label an image from its path parts relative to the root; None when it has no subject folder.

    Layouts: `<subject>/.../<file>`, `<subject>/<real|ai>/.../<file>`, and, with no subject at all (subject ""),
    `<real|ai>/.../<file>`; each optionally under `train|val|test/` when `split_layout` is on. A source folder wins
    over the file name.
    """
    split = None
    if split_layout:
        if len(parts) < 1 or parts[0].casefold() not in SPLIT_NAMES:
            return None
        split, parts = parts[0].casefold(), parts[1:]
    if len(parts) < 2:
        return None
    subject, folders, name = parts[0], parts[1:-1], parts[-1]
    by_name = is_ai_name(name, rule.token, rule.match)
    top_source = rule.folder_source(subject)
    if top_source is not None:  # the source-only layout of detection data sets: real/ and ai/ at the top
        return Label("", top_source, split, from_folder=True, name_disagrees=by_name and not top_source)
    for folder in folders:
        by_folder = rule.folder_source(folder)
        if by_folder is not None:
            # A name without the token says nothing (AI folders rarely tag names), so only a tagged
            # name in a real folder is a disagreement worth reporting.
            return Label(subject, by_folder, split, from_folder=True, name_disagrees=by_name and not by_folder)
    return Label(subject, by_name, split)
