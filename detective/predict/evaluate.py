"""`predict.py DIR --evaluate`: score a checkpoint on any labelled folder, and show where it fails.

Labels come from `scan_folder` with the label rule the checkpoint was trained with, so a folder is read exactly
as training reads it; images that cannot be read or labelled are listed and left out of every figure. This is the
driver: `evaluate_folder` feeds the folder through the `Predictor`, the same one `predict.py` uses, so every
figure agrees with what `predict.py` says image by image; the figures themselves, their text and pictures are
`detective.evaluation`'s. The optional robustness sweep re-scores the source head after perturbations applied in
memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib import import_module
from itertools import islice
from pathlib import Path
from typing import Any

from PIL import Image

from detective.data.images import ImageDecodeError, jpeg_quality, load_rgb, opened_header
from detective.data.labels import LabelRule
from detective.data.scan import Sample, scan_folder
from detective.evaluation.records import Evaluation, Record
from detective.predict.perturb import Perturbation
from detective.predict.predictor import Failure, Prediction, Predictor, default_workers

Progress = Callable[[int, int], None]  # (images done, images in all): for a progress bar


def file_jpeg_quality(path: str | Path) -> int | None:
    """Estimated quality of a JPEG file from its header (None for other formats or an odd table)."""
    try:
        with opened_header(path) as im:
            return jpeg_quality(im)
    except ImageDecodeError:  # the file was readable when scanned; a header that fails now only loses this slice
        return None


def label_rule(hparams: Mapping[str, Any], token: str | None = None) -> LabelRule:
    """The rule the checkpoint was trained with (`hparams["labels"]`, the `data.labels` config), else the defaults;
    `token` overrides the AI token."""
    saved = hparams.get("labels") or {}
    known = {
        k: tuple(v) if isinstance(v, (list, tuple)) else v
        for k, v in saved.items()
        if k in LabelRule.__dataclass_fields__
    }
    rule = LabelRule(**known)
    return replace(rule, token=token) if token else rule


def evaluate_folder(
    root: str | Path,
    predictor: Predictor,
    rule: LabelRule = LabelRule(),
    subject_head: bool = True,
    perturbations: Sequence[Perturbation] = (),
    batch_size: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Scan, predict, score; then the same source metrics after each perturbation. Raises FileNotFoundError /
    NotADirectoryError for a bad root; unreadable images never raise, they are listed in `report["excluded"]`."""
    scan = scan_folder(root, rule)
    tick = _Ticker(progress or (lambda done, total: None), len(scan.samples) * (1 + len(perturbations)))
    excluded = [{"path": str(p), "error": f"{p}: outside any subject folder, not labelled"} for p in scan.unlabelled]
    excluded += [{"path": err.path, "error": str(err)} for err in scan.unreadable]
    evaluation, failed = evaluate_samples(scan.samples, predictor, subject_head, batch_size, workers, tick)
    excluded += failed
    records = evaluation.records
    tick.total = len(scan.samples) + len(records) * len(perturbations)
    report = evaluation.report
    if scan.split_layout:
        report["notes"].append(
            f"{scan.root} has train/val/test folders and all of them were scored: figures on training images are "
            f"optimistic; evaluate {scan.root}/test for the held-out split"
        )
    report["robustness"] = [robustness(records, predictor, p, batch_size, workers, tick) for p in perturbations]
    evaluation.report = {
        "root": str(scan.root),
        "label_rule": {k: getattr(rule, k) for k in LabelRule.__dataclass_fields__},
        **report,
        "excluded": excluded,
        "ignored_files": scan.ignored_files,
    }
    return evaluation


def evaluate_samples(
    samples: Sequence[Sample],
    predictor: Predictor,
    subject_head: bool = True,
    batch_size: int | None = None,
    workers: int | None = None,
    tick: Callable[[], None] = lambda: None,
) -> tuple[Evaluation, list[dict[str, str]]]:
    """Predict labelled samples and score them: (the evaluation, the samples that could not be read). The end of a
    training run uses it on its test split, `evaluate_folder` on a scanned folder."""
    records, failed = [], []
    with ThreadPoolExecutor(1) as pool:
        # The figures' module imports torchmetrics, which pulls in torchvision's models and torch._dynamo: a few
        # seconds of start-up, spent here while the images are judged instead of before.
        report = pool.submit(import_module, "detective.evaluation.report")
        for sample, result in zip(
            samples, predictor.iter_predict([s.path for s in samples], batch_size, 1, workers), strict=True
        ):
            tick()
            if isinstance(result, Failure):
                failed.append({"path": str(sample.path), "error": result.error})
                continue
            records.append(_record(sample, result))
        build_report = report.result().build_report
    evaluation = build_report(records, predictor.subjects, predictor.threshold, predictor.uncertain, subject_head)
    return evaluation, failed


@dataclass
class _Ticker:
    progress: Progress
    total: int
    done: int = 0

    def __call__(self) -> None:
        self.done += 1
        self.progress(self.done, self.total)


def _record(sample: Sample, result: Prediction) -> Record:
    quality = file_jpeg_quality(sample.path) if sample.format == "JPEG" else None
    return Record(
        sample.path,
        sample.subject,
        sample.is_ai,
        result.ai_probability,
        result.subject,
        result.subject_confidence,
        result.uncertain,
        result.unfamiliar,
        sample.format,
        sample.size,
        quality,
    )


def robustness(
    records: Sequence[Record],
    predictor: Predictor,
    perturbation: Perturbation,
    batch_size: int | None = None,
    workers: int | None = None,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Source metrics after `perturbation`, applied to each decoded image in memory (the files are only read)."""
    probs, target, failed = [], [], []
    for record, result in zip(
        records, _perturbed_predictions(records, predictor, perturbation, batch_size, workers), strict=True
    ):
        tick()
        if isinstance(result, str):
            failed.append({"path": str(record.path), "error": result})
        else:
            probs.append(result)
            target.append(int(record.is_ai))
    from detective.evaluation.metrics import source_metrics  # imported by the time records exist (evaluate_samples)

    metrics = source_metrics(probs, target, predictor.threshold) if probs else None
    return {"perturbation": str(perturbation), "source": metrics, "excluded": failed}


def _perturbed_predictions(
    records: Sequence[Record],
    predictor: Predictor,
    perturbation: Perturbation,
    batch_size: int | None,
    workers: int | None,
) -> Iterator[float | str]:
    """Per record, in order: the AI probability of the perturbed image, or the reason it failed.

    Perturbing (a full decode, and e.g. a JPEG encode) is the costly part, so it runs in the thread pool,
    a batch at a time; the perturbed images are then predicted without further threads."""
    with ThreadPoolExecutor(max(1, default_workers() if workers is None else workers)) as pool:
        for chunk in _batched(records, predictor.batch_size if batch_size is None else batch_size):
            images = list(pool.map(lambda r: _perturbed(r.path, perturbation), chunk))
            good = [im for im in images if isinstance(im, Image.Image)]
            scores = iter(predictor.predict(good, batch_size, 1, workers=0))
            for image in images:
                if isinstance(image, str):
                    yield image
                    continue
                result = next(scores)
                yield result.error if isinstance(result, Failure) else result.ai_probability


def _perturbed(path: Path, perturbation: Perturbation) -> Image.Image | str:
    try:
        return perturbation.apply(load_rgb(path))
    except ImageDecodeError as err:
        return str(err)


def _batched(items: Sequence[Record], size: int) -> Iterable[Sequence[Record]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
