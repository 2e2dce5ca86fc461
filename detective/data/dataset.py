"""A map-style dataset of labelled samples yielding (uint8 image, subject index, is-AI) tuples.

An image that fails to decode mid-epoch (a truncated file passes the header probe) is reported
once per process and dropped from its batch by `collate_skip_failed`, so it never kills an epoch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from detective.data.cache import DecodedCache
from detective.data.images import ImageDecodeError
from detective.data.scan import Sample
from detective.data.transforms import load_image, stack_channels_last

Item = tuple[torch.Tensor, int, float]


class ImageDataset(Dataset):
    """Decodes each sample (at reduced scale when it is much larger than `min_side`) and transforms it.

    With a `cache`, the decoded image comes from (or goes to) the on-disk cache of decoded images instead.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        subjects: Sequence[str],
        transform: Callable[[torch.Tensor], torch.Tensor],
        min_side: int | None = None,
        cache: DecodedCache | None = None,
    ) -> None:
        self.samples = list(samples)
        self.index = {name: i for i, name in enumerate(subjects)}
        self.transform = transform
        self.min_side = min_side
        self.cache = cache
        self.failed: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item | None:
        sample = self.samples[i]
        try:
            image = self.cache.load(sample.path) if self.cache else load_image(sample.path, self.min_side)
        except ImageDecodeError as err:
            if str(sample.path) not in self.failed:
                self.failed.add(str(sample.path))
                print(f"WARNING: skipped {err}", file=sys.stderr)
            return None
        return self.transform(image), self.index[sample.subject], float(sample.is_ai)


def collate_skip_failed(batch: list[Item | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Collate the items that decoded; None when none did (the training step then skips the batch)."""
    good = [item for item in batch if item is not None]
    if not good:
        return None
    images, subjects, sources = zip(*good, strict=True)
    return stack_channels_last(images), torch.tensor(subjects), torch.tensor(sources, dtype=torch.float32)
