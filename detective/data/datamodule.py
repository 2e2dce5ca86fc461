"""The LightningDataModule: root folder(s) (or the built-in demo) -> audited, split, batched loaders."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from detective.data.audit import AuditReport, DataError, audit_roots, format_audit
from detective.data.augment import AugmentConfig, source_train_transform, train_transform
from detective.data.cache import DecodedCache, default_cache_dir
from detective.data.dataset import ImageDataset, collate_skip_failed
from detective.data.geometry import check_source_view
from detective.data.labels import LabelRule
from detective.data.scan import ScanResult, scan_folder
from detective.data.split import merge_splits, stratified_split
from detective.data.transforms import resize_size
from detective.data.views import eval_views

log = logging.getLogger(__name__)


class DetectiveDataModule(L.LightningDataModule):
    """Scans `root` (a folder, a list of them, or the demo set when None), prints the audit, and serves
    train/val/test loaders of `Batch`es.

    Every setting comes from `conf/data` (no defaults here, so Python and the YAML cannot disagree)."""

    def __init__(
        self,
        root: str | Sequence[str] | None,
        image_size: int,
        crop_fraction: float,
        source_view: str,
        source_crop: int,
        source_crops: int,
        source_train_crops: int | str,
        batch_size: int,
        num_workers: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        labels: Mapping[str, Any],
        augment: Mapping[str, Any],
        demo: Mapping[str, Any],
        pin_memory: bool,
        decoded_cache: bool,
        cache_dir: str | None,
    ) -> None:
        """`source_view`: `native` crops of `source_crop` pixels for the source head (a grid of up to `source_crops`
        when judging; in training the same grid, or `source_train_crops` random ones; `detective.data.views`), or
        `resized`: the subject's downscaled view.
        `decoded_cache`: keep images decoded at training size on disk (`detective.data.cache`), in `cache_dir`
        (default: `~/.cache/detective/decoded`), so that decoding happens once, not once per epoch and run; native
        crops need the full-resolution image, which is decoded from the file instead (README "Speed")."""
        super().__init__()
        self.root = root
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.source_view = check_source_view(source_view)
        self.source_crop, self.source_crops, self.source_train_crops = source_crop, source_crops, source_train_crops
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.rule = LabelRule(**labels)
        self.augment = AugmentConfig(**augment)
        self.demo = dict(demo)
        self.pin_memory = pin_memory
        self.native = self.source_view == "native"
        self.cache = self._decoded_cache(cache_dir) if decoded_cache and not self.native else None
        self.scans: list[ScanResult] = []  # one per root
        self.report: AuditReport | None = None
        self.splits: dict[str, list] = {}
        self.subjects: list[str] = []
        self._datasets: dict[str, ImageDataset] = {}

    @property
    def deterministic(self) -> bool:
        """True when every epoch shows each training image the same pixels, or their mirror image, in every view
        training takes (then a frozen backbone's features can be cached, at most two per view): no blur, JPEG
        or rescaling, a centre crop for the downscaled view (unless set-up found no subjects and the source head
        reads crops, so there is no such view), and native crops (if any) on the judging grid."""
        a = self.augment
        if a.blur_prob or a.jpeg_prob or a.rescale_prob:
            return False
        image_view = not self.native or not self.scans or bool(self.subjects)
        return (a.crop == "center" or not image_view) and (not self.native or self.source_train_crops == "grid")

    def data_roots(self) -> list[Path]:
        """The folders to train on: `root` (one or a list), or the demo set (generated into the cache on first use)."""
        if self.root is None:
            from detective.data.demo import demo_root

            return [demo_root(**self.demo)]
        roots = [self.root] if isinstance(self.root, str | os.PathLike) else list(self.root)
        if not roots:
            raise DataError("data.root is an empty list: name a folder, or several (data.root=[/a,/b])")
        return [Path(os.path.expanduser(str(root))) for root in roots]

    def _decoded_cache(self, cache_dir: str | None) -> DecodedCache:
        folder = Path(cache_dir) if cache_dir else default_cache_dir() / "decoded"
        return DecodedCache(folder, resize_size(self.image_size, self.crop_fraction))

    def prepare_data(self) -> None:
        self.data_roots()  # generates the demo set once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.scans:
            return
        self.scans = [scan_folder(root, self.rule) for root in self.data_roots()]
        # Each root split on its own: stratified by root too, and a root added never moves another's files.
        splits = [
            stratified_split(scan.samples, scan.root, self.val_fraction, self.test_fraction, self.seed)
            for scan in self.scans
        ]
        self.splits = merge_splits(splits)
        self.report = audit_roots(self.scans, splits, self.rule)
        if self.trainer is None or self.trainer.is_global_zero:
            log.info(format_audit(self.report))
        self.report.raise_on_error()
        self.subjects = self.report.subjects if self.report.subject_head else []

    def dataset(self, split: str) -> ImageDataset:
        """The dataset of one split, with the train or the shared eval views; built once, so a file
        that fails to decode is reported once, not every epoch."""
        if split not in self._datasets:
            self._datasets[split] = self._build_dataset(split)
        return self._datasets[split]

    def _build_dataset(self, split: str) -> ImageDataset:
        train = split == "train"
        views = eval_views(
            self.image_size,
            self.crop_fraction,
            self.source_view,
            self.source_crop,
            self.source_crops,
            subject_head=bool(self.subjects),
            image_view=train_transform(self.image_size, self.augment, self.crop_fraction) if train else None,
            source_train_view=source_train_transform(
                self.source_crop, self.augment, self.source_train_crops, self.source_crops
            )
            if train
            else None,
        )
        return ImageDataset(self.splits[split], self.subjects, views, cache=self.cache)

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
