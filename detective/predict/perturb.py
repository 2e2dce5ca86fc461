"""In-memory perturbations for the robustness sweep of `predict.py --evaluate --perturb`.

A detector that only works on pristine files fails on the first re-upload: the sweep re-scores the source head
after JPEG re-compression, downscaling and blur, applied to the decoded image in memory (files are never
touched). Pillow only, so the command line can check a spec before anything heavy is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, ImageFilter

from detective.data.images import jpeg_recompress

# kind -> (smallest, largest value, what it means); a resize factor above 4 would only cost memory.
KINDS = {
    "jpeg": (1, 100, "JPEG quality, a whole number from 1 to 100"),
    "resize": (1e-3, 4, "scale factor of each side, above 0 and at most 4, e.g. 0.5"),
    "blur": (1e-3, 100, "Gaussian standard deviation in pixels, above 0"),
}


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: `jpeg=70` (re-compress at quality 70), `resize=0.5` (each side halved), `blur=1.0`."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"

    def apply(self, image: Image.Image) -> Image.Image:
        """A new RGB image; `image` itself is left as it is."""
        if self.kind == "jpeg":
            return jpeg_recompress(image, int(self.value))
        if self.kind == "resize":
            size = (max(1, round(image.width * self.value)), max(1, round(image.height * self.value)))
            return image.resize(size, Image.Resampling.BICUBIC)  # antialiased when shrinking, as most resizers are
        return image.filter(ImageFilter.GaussianBlur(self.value))


def parse_perturbation(spec: str) -> list[Perturbation]:
    """`jpeg=90,70,50` -> three perturbations; raises ValueError naming the spec and what is allowed."""
    kind, sep, values = spec.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not values.strip():
        allowed = "; ".join(f"{k}=V[,V...] ({v[2]})" for k, v in KINDS.items())
        raise ValueError(f"unknown perturbation {spec!r}: use {allowed}")
    return [_checked(kind, text.strip(), spec) for text in values.split(",")]


def parse_perturbations(specs: Iterable[str]) -> list[Perturbation]:
    """Every spec, in order, each perturbation once."""
    return list(dict.fromkeys(p for spec in specs for p in parse_perturbation(spec)))


def _checked(kind: str, text: str, spec: str) -> Perturbation:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    low, high, meaning = KINDS[kind]
    if not low <= value <= high or (kind == "jpeg" and value != int(value)):
        raise ValueError(f"perturbation {spec!r}: {text!r} is not a valid {kind} value ({meaning})")
    return Perturbation(kind, value)
