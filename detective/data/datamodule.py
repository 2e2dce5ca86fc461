"""The LightningDataModule: root folder (or the built-in demo) -> audited, split, batched loaders."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from detective.data.audit import AuditReport, audit, format_report
from detective.data.augment import AugmentConfig, train_transform
from detective.data.cache import DecodedCache, default_cache_dir
from detective.data.dataset import ImageDataset, collate_skip_failed
from detective.data.labels import LabelRule
from detective.data.scan import ScanResult, scan_folder
from detective.data.split import stratified_split
from detective.data.transforms import DEFAULT_CROP_FRACTION, eval_transform, resize_size


@rank_zero_only
def _print(text: str) -> None:
    print(text, flush=True)


class DetectiveDataModule(L.LightningDataModule):
    """Scans `root` (the demo set when None), prints the audit, and serves train/val/test loaders."""

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        crop_fraction: float = DEFAULT_CROP_FRACTION,
        batch_size: int = 32,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        labels: Mapping[str, Any] | None = None,
        augment: Mapping[str, Any] | None = None,
        demo: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        decoded_cache: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        """`decoded_cache`: keep images decoded at training size on disk (`detective.data.cache`), in `cache_dir`
        (default: `~/.cache/detective/decoded`), so that decoding happens once, not once per epoch and run."""
        super().__init__()
        self.root = root
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.rule = _label_rule(labels or {})
        self.augment = AugmentConfig(**_plain(augment or {}))
        self.demo = _plain(demo or {})
        self.pin_memory = pin_memory
        self.cache = self._decoded_cache(cache_dir) if decoded_cache else None
        self.scan: ScanResult | None = None
        self.report: AuditReport | None = None
        self.splits: dict[str, list] = {}
        self.subjects: list[str] = []
        self._datasets: dict[str, ImageDataset] = {}

    def data_root(self) -> Path:
        """The folder to train on: `root`, or the demo set (generated into the cache on first use)."""
        if self.root is not None:
            return Path(os.path.expanduser(str(self.root)))
        from detective.data.demo import demo_root

        return demo_root(**self.demo)

    def _decoded_cache(self, cache_dir: str | None) -> DecodedCache:
        folder = Path(cache_dir) if cache_dir else default_cache_dir() / "decoded"
        return DecodedCache(folder, resize_size(self.image_size, self.crop_fraction))

    def prepare_data(self) -> None:
        self.data_root()  # generates the demo set once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.scan is not None:
            return
        self.scan = scan_folder(self.data_root(), self.rule)
        self.splits = stratified_split(
            self.scan.samples, self.scan.root, self.val_fraction, self.test_fraction, self.seed
        )
        self.report = audit(self.scan, self.splits, self.rule)
        _print(format_report(self.report, self.scan.ignored_files))
        self.report.raise_on_error()
        self.subjects = self.report.subjects

    def dataset(self, split: str) -> ImageDataset:
        """The dataset of one split, with the train or the shared eval transform; built once, so a file
        that fails to decode is reported once, not every epoch."""
        if split not in self._datasets:
            self._datasets[split] = self._build_dataset(split)
        return self._datasets[split]

    def _build_dataset(self, split: str) -> ImageDataset:
        if split == "train":
            transform = train_transform(self.image_size, self.augment, self.crop_fraction)
        else:
            transform = eval_transform(self.image_size, self.crop_fraction)
        return ImageDataset(
            self.splits[split],
            self.subjects,
            transform,
            resize_size(self.image_size, self.crop_fraction),
            cache=self.cache,
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_skip_failed,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Hydra hands over DictConfig/ListConfig; dataclasses want plain values."""
    return {
        k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v  # ListConfig is a Sequence
        for k, v in mapping.items()
    }


def _label_rule(labels: Mapping[str, Any]) -> LabelRule:
    return LabelRule(**_plain(labels))
