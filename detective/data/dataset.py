"""A map-style dataset of labelled samples yielding each image's views with its labels, and their collation.

An image that fails to decode mid-epoch (a truncated file passes the header probe) is reported
once per process and dropped from its batch by `collate_skip_failed`, so it never kills an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from detective.data.cache import DecodedCache
from detective.data.images import ImageDecodeError
from detective.data.scan import Sample
from detective.data.transforms import load_image, stack_channels_last
from detective.data.views import Views

log = logging.getLogger(__name__)
Item = tuple[torch.Tensor | None, torch.Tensor | None, int, float]


class Batch(NamedTuple):
    """`images`: the whole images downscaled, (B, 3, S, S) uint8, or None where no head needs them; `crops`: the
    source head's native crops, (N, 3, C, C) uint8, image `owner[n]` each, or None where it reads `images`."""

    images: torch.Tensor | None
    crops: torch.Tensor | None
    owner: torch.Tensor | None
    subjects: torch.Tensor
    sources: torch.Tensor


class ImageDataset(Dataset):
    """Decodes each sample (at reduced scale when `views.decode_side` allows) and makes its `views`.

    With a `cache`, the decoded image comes from (or goes to) the on-disk cache of decoded images instead.
    """

    def __init__(
        self, samples: Sequence[Sample], subjects: Sequence[str], views: Views, cache: DecodedCache | None = None
    ) -> None:
        self.samples = list(samples)
        self.index = {name: i for i, name in enumerate(subjects)}
        self.views = views
        self.cache = cache
        self.failed: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item | None:
        sample = self.samples[i]
        try:
            image = self.cache.load(sample.path) if self.cache else load_image(sample.path, self.views.decode_side)
        except ImageDecodeError as err:
            if str(sample.path) not in self.failed:
                self.failed.add(str(sample.path))
                log.warning("skipped %s", err)
            return None
        # Source-only data has no subject: index 0 is a placeholder the model never reads.
        return (*self.views(image), self.index.get(sample.subject, 0), float(sample.is_ai))


def collate_views(
    images: Sequence[torch.Tensor | None], crops: Sequence[torch.Tensor | None]
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Per-image views -> (images, crops, owner) batched channels_last, as `DetectiveNet` takes them."""
    owner = None
    if crops[0] is not None:
        owner = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(crops)])
        crops = stack_channels_last([c for item in crops for c in item])
    return (
        (stack_channels_last(images) if images[0] is not None else None),
        (crops if owner is not None else None),
        owner,
    )


def collate_skip_failed(batch: list[Item | None]) -> Batch | None:
    """Collate the items that decoded; None when none did (the training step then skips the batch)."""
    good = [item for item in batch if item is not None]
    if not good:
        return None
    images, crops, subjects, sources = zip(*good, strict=True)
    return Batch(*collate_views(images, crops), torch.tensor(subjects), torch.tensor(sources, dtype=torch.float32))
