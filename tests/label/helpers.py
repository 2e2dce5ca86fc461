"""Helpers the label tests share: folders of small text files named like images, and runs over them."""

import json
from pathlib import Path

from hypothesis import strategies as st

from detective.data.labels import IMAGE_EXTENSIONS, is_image_name
from detective.label.journal import JOURNAL_PREFIX
from detective.label.plan import apply, plan_folder, start_journal
from detective.label.results import Result
from detective.label.rule import TagRule

RULE = TagRule()


def make(folder: Path, names: list[str]) -> Path:
    """Create files whose content is their own name, so a test can tell files apart after renames."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return folder


def listing(folder: Path) -> dict[str, str]:
    """Relative path -> content of every file except journals."""
    return {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(JOURNAL_PREFIX)
    }


def journals(folder: Path) -> list[Path]:
    return sorted(folder.glob(JOURNAL_PREFIX + "*"))


def run(folder: Path, **options) -> list[Result]:
    """Plan and apply a real (journaled) run; returns every result, the files left alone included."""
    plan = plan_folder(folder, options.pop("rule", RULE), **options)
    if not plan.renames:
        return plan.others
    with start_journal(plan) as journal:
        return plan.others + list(apply(plan, journal))


def write_journal(folder: Path, lines: list[dict], tail: str = "") -> Path:
    header = {"journal": "detective-label", "version": 1, "action": "tag"}
    path = folder / f"{JOURNAL_PREFIX}test.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [header, *lines]) + tail)
    return path


stems = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=30)


image_names = st.builds(
    lambda stem, ext, upper: stem + (ext.upper() if upper else ext),
    stems,
    st.sampled_from(sorted(IMAGE_EXTENSIONS)),
    st.booleans(),
).filter(is_image_name)
