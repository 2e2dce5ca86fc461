"""What of the frozen MobileNetV2 tells AI images from real photos: the measurement behind `model.source_taps`,
`model.source_statistics` and `model.source_loss`, within one collection and across collections.

    uv run python benchmarks/taps.py [--data ../shared/data/realorai_dev] [--weights ...] [--folds 3]
    uv run python benchmarks/taps.py --across realorai_dev,sd_coco_dev,real_vs_ai_sample [--degraded] [--reconstructed]
    uv run python benchmarks/taps.py --across realorai_dev,sd_coco_dev,real_vs_ai_sample --novelty
    uv run python benchmarks/taps.py --across realorai_dev,sd_coco_dev,real_vs_ai_sample --scale 0.5
    uv run python benchmarks/taps.py --across realorai_dev,sd_coco_dev,real_vs_ai_sample --stability
    uv run python benchmarks/taps.py --across realorai_dev,sd_coco_dev,real_vs_ai_sample --consistent 0.05

For every image, the frozen ImageNet backbone runs on its judging grid of native 224 px crops; each block's maps give
per-channel statistics (`TAP_STATISTICS`: mean, standard deviation, detail; fineness is derived from the last two)
per crop. A logistic regression (L2, standardised features) is cross-validated on the same stratified folds as
`benchmarks/detect.py`, fitted either on every crop labelled as its image ("every crop", what `source_loss: crop`
trains) or on the statistics averaged over each image's grid ("grid mean"); an image's score is the mean of its
crops' logits. Prints the mean test AUROC and accuracy (at logit 0) over folds per block and per set of blocks.

`--across` leaves one collection out (names under ../shared/data, or paths): fitted on every crop of the others (each
collection's real and AI crops weighted equally), judged on the one left out, per set of features, by two scorers: the
logistic regression, and a model of real photos only (how far a crop's features lie from the training collections'
real crops: squared Mahalanobis distance, covariance shrunk towards its diagonal). Prints AUROC, balanced accuracy at
logit 0 and the share of confidently wrong answers (p < 0.1 or > 0.9 on the wrong side) of each held-out collection,
also after temperature scaling fitted on every 7th image of the training collections (kept out of the regression), as
a validation split would fit it, and after one fitted across collections instead (each training collection's validation
images scored by a regression fitted on the other training collections: as a generator it never saw), with the
calibration error each temperature gives the held-out collection and the training collections' validation images.
`--degraded` adds, for training only, a degraded copy of every image (rescaled by
0.5-1.5 at random, re-compressed as JPEG at quality 60-95, some blurred): the augmentation lever, measured without
training a network. `--reconstructed` adds, for training only, each real photo's crops passed through a small
autoencoder trained on other real photos (`benchmarks/reconstruct.py`), labelled AI: fakes aligned in content with
the reals. `--novelty` asks instead which measure of unfamiliarity (the net's, a Mahalanobis distance, the spread
of an image's crop logits), fitted on the other collections, flags the one left out, and whether the flagged images
are the confidently wrong ones. `--scale 0.5` judges every image (within a collection, or in training and held out)
downscaled by that factor first (antialiased), so that whatever resampling and compression left in either source is
resampled alike. `--stability` fits nothing: how much small Gaussian noise moves an image's pooled features
(RIGID: real photos' features are steadier), its AUROC on each collection. `--consistent MARGIN` fits the regression
only on the features that tell AI from real the same way in every training collection (each feature's own AUROC over
a collection's images off 0.5 by at least MARGIN, on the same side in all): invariance across collections. A
feature set of the pixels themselves sits beside the backbone's ("pixel traces": periodic resampling and block-coding
peaks, and the residual's spectrum). Statistics are kept under benchmarks/results/taps/ so a second run skips the
backbone.
"""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from detect import RESULTS, folds_of, folds_parser, image_files  # noqa: E402

from detective.data.views import grid_crops  # noqa: E402
from detective.model.net import TAP_STATISTICS, fineness_of  # noqa: E402

BLOCKS = (0, 1, 2, 3, 4, 6, 8, 10, 13, 16, 18)  # reported one by one
EARLY = tuple(range(11))  # every block down to the 14x14 maps
DEEP = (13, 16, 18)  # the 7x7 maps' blocks: what ImageNet taught the network about content
# (blocks, statistics, fitted on): the sets compared within one collection
SETS = (
    ((3, 6, 10), ("mean", "std"), "grid mean"),  # the default before
    ((3, 6, 10), ("mean", "std"), "every crop"),
    (EARLY, ("mean", "std"), "every crop"),
    (EARLY, ("mean", "std", "detail"), "grid mean"),
    (EARLY, ("mean", "std", "detail"), "every crop"),  # the default
    ((0, 2, 4, 8, 10), ("mean", "std", "detail"), "every crop"),
    (EARLY, ("fineness",), "every crop"),
)
# name: [(blocks, statistics), ...]: the sets compared across collections
ACROSS_SETS = {
    "early statistics (default)": [(EARLY, ("mean", "std", "detail"))],
    "early means and spreads": [(EARLY, ("mean", "std"))],
    "early fineness": [(EARLY, ("fineness",))],
    "early statistics + fineness": [(EARLY, ("mean", "std", "detail", "fineness"))],
    "deep pooled": [(DEEP, ("mean",))],
    "last block pooled": [((18,), ("mean",))],
    "early statistics + deep pooled": [(EARLY, ("mean", "std", "detail")), (DEEP, ("mean",))],
    "pixel traces": [(("pixels",), ("traces",))],
}
MEASURED = ("mean", "std", "detail")  # what the backbone pass keeps; fineness is derived from std and detail
NOVELTY_SETS = {
    "early statistics (default)": ACROSS_SETS["early statistics (default)"],
    "deep pooled": [(DEEP, ("mean",))],
}
L2 = 1e-4
VALIDATION_EVERY = 7  # --across: every 7th image of a training collection fits the temperature, not the regression
SHRINK = 0.1  # the real-photo model's covariance: (1 - SHRINK) of the sample's, SHRINK of its diagonal
AI_FOLDERS = ("ai", "1_fake")
# Pixel traces: the periods at which upsampling (2x, 4x, 8x latent decoders; other ratios) and 8x8 block coding leave
# peaks in an image's spectrum, and the bands of its residual's radial spectrum.
PERIODS = (2, 3, 4, 5, 6, 7, 8, 16)
SPECTRUM_BANDS = 16
# --stability: noise standard deviations (normalised input), the blocks whose pooled features are compared, crops
STABILITY_NOISE = (0.05, 0.2, 0.5)
STABILITY_BLOCKS = (4, 10, 18)
STABILITY_CROPS = 4


def degraded(path: Path, seed: int) -> torch.Tensor:
    """`path` decoded, then rescaled by 0.5-1.5 with a filter drawn from bilinear, bicubic and Lanczos (half the
    time), blurred (a third of the time) and re-compressed as JPEG at quality 60-95, all drawn from `seed`: a uint8
    (3, H, W) tensor. Resampling traces then mark both sources alike."""
    from PIL import Image, ImageFilter, ImageOps

    from detective.data.transforms import load_image

    rng = random.Random(seed)
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    if rng.random() < 0.5:
        scale, resample = rng.uniform(0.5, 1.5), rng.choice((Image.BILINEAR, Image.BICUBIC, Image.LANCZOS))
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    if rng.random() < 1 / 3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(60, 95))
    return load_image(io.BytesIO(buffer.getvalue()))


def frozen_trunk(weights: Path) -> torch.nn.Sequential:
    """The ImageNet MobileNetV2's blocks, in eval mode and channels_last."""
    import torchvision

    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.features.eval().to(memory_format=torch.channels_last)


def normalized(crops: torch.Tensor) -> torch.Tensor:
    """uint8 crops as the backbone takes them: ImageNet-normalised float, channels_last."""
    from detective.constants import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((crops.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)


def block_statistics(
    files: list[Path], weights: Path, crops_of: Callable[[Path, int], torch.Tensor] | None = None
) -> tuple[dict[tuple[int, str], torch.Tensor], torch.Tensor]:
    """Per (block, statistic), every block: [crops, channels] over each image's judging grid (`crops_of(path,
    index)`: uint8 crops, by default the grid of the file as it is), all images' crops in a row, and the image each
    crop belongs to [crops]."""
    from detective.memory import trim_freed_memory

    trunk = frozen_trunk(weights)
    stats: dict[tuple[int, str], list[torch.Tensor]] = {(b, s): [] for b in range(len(trunk)) for s in MEASURED}
    owner = []
    with torch.inference_mode():
        for index, path in enumerate(files):
            crops = normalized((crops_of or judged_crops)(path, index))
            owner += [index] * len(crops)
            trim_freed_memory()  # the small statistics kept between big freed maps would otherwise pin the heap
            for x in crops.split(4):  # a few crops at a time: faster on a CPU (README "Speed")
                for block_index, block in enumerate(trunk):
                    x = block(x)
                    for name in MEASURED:
                        stats[block_index, name].append(TAP_STATISTICS[name](x))
    return {key: torch.cat(v) for key, v in stats.items()}, torch.tensor(owner)


def judged_crops(path: Path, index: int) -> torch.Tensor:
    """The judging grid of native 224 px crops of the file as it is."""
    from detective.data.transforms import load_image

    return grid_crops(load_image(path), 224, 16)


def scaled_crops(factor: float) -> Callable[[Path, int], torch.Tensor]:
    """The judging grid of a file downscaled by `factor` (antialiased bilinear; never below one crop)."""
    from detective.data.transforms import load_image

    def crops(path: Path, index: int) -> torch.Tensor:
        image = load_image(path)
        size = [max(224, round(side * factor)) for side in image.shape[-2:]]
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)[0]
        return grid_crops(image.round().clamp(0, 255).to(torch.uint8), 224, 16)

    return crops


def pixel_traces(crops: torch.Tensor) -> torch.Tensor:
    """Per uint8 crop, what resampling and block coding leave in its luma, whatever the crop's offset [crops,
    values]: per axis and period p, the log magnitudes of the Fourier terms of the mean absolute neighbour difference
    folded at p (a peak at 1/p in the spectrum); then the Laplacian residual's power in radial bands (log, centred)."""
    luma = (crops.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    values = []
    for profile in (luma.diff(dim=2).abs().mean(1), luma.diff(dim=1).abs().mean(2)):  # along x, along y
        for p in PERIODS:
            folded = profile[:, : profile.shape[1] // p * p].unflatten(1, (-1, p)).mean(1)
            share = folded / folded.mean(1, keepdim=True).clamp_min(1e-6)  # a flat crop reads 0, not NaN
            terms = torch.fft.rfft(share, dim=1).abs()[:, 1 : p // 2 + 1] / p
            values.append(torch.log(terms + 1e-4))
    residual = 4 * luma[:, 1:-1, 1:-1] - luma[:, :-2, 1:-1] - luma[:, 2:, 1:-1] - luma[:, 1:-1, :-2] - luma[:, 1:-1, 2:]
    power = torch.fft.rfft2(residual).abs() ** 2
    radius = torch.sqrt(torch.fft.fftfreq(residual.shape[1])[:, None] ** 2 + torch.fft.rfftfreq(residual.shape[2]) ** 2)
    band = (radius / 0.5 * SPECTRUM_BANDS).long().clamp(max=SPECTRUM_BANDS - 1).flatten()
    bands = torch.zeros(len(crops), SPECTRUM_BANDS).index_add_(1, band, power.flatten(1))
    bands = torch.log(bands / torch.bincount(band, minlength=SPECTRUM_BANDS) + 1e-8)
    return torch.cat([*values, bands - bands.mean(1, keepdim=True)], 1)


def traced(
    files: list[Path], crops_of: Callable[[Path, int], torch.Tensor]
) -> tuple[dict[tuple[str, str], torch.Tensor], torch.Tensor]:
    """`pixel_traces` of every file's judging grid, in `block_statistics`' form."""
    rows = [pixel_traces(crops_of(path, index)) for index, path in enumerate(files)]
    return {("pixels", "traces"): torch.cat(rows)}, torch.cat([torch.full((len(r),), i) for i, r in enumerate(rows)])


def degraded_crops(path: Path, index: int) -> torch.Tensor:
    return grid_crops(degraded(path, index), 224, 16)


def reconstructed_crops() -> Callable[[Path, int], torch.Tensor]:
    """The judging grid of a file, each crop passed through benchmarks/reconstruct.py's autoencoder."""
    import reconstruct

    net = reconstruct.load()
    return lambda path, index: reconstruct.reconstructed(net, judged_crops(path, index), index)


def per_image(rows: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """The mean of each image's rows."""
    images = int(owner.max()) + 1
    sums = torch.zeros(images, *rows.shape[1:]).index_add_(0, owner, rows)
    return sums / torch.bincount(owner, minlength=images).view(-1, *[1] * (rows.dim() - 1))


def logistic(rows: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None):
    """A logistic regression on standardised `rows` [N, D] with 0/1 `labels` [N] (and per-row weights), converged by
    L-BFGS: the function that gives new rows their logits."""
    mu, sd = rows.mean(0), rows.std(0) + 1e-6
    weight = torch.ones(len(rows)) if weight is None else weight / weight.mean()
    w = torch.zeros(rows.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)
    standardized = (rows - mu) / sd

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.binary_cross_entropy_with_logits(standardized @ w + b, labels, weight) + L2 * (w**2).sum()
        value.backward()
        return value

    opt.step(loss)
    return lambda new: ((new - mu) / sd @ w + b).detach()


def mahalanobis(fitted_rows: torch.Tensor):
    """How far rows lie from `fitted_rows`' distribution (squared Mahalanobis distance, shrunk covariance): the
    function that scores new rows; fitted on real photos only, larger = less like a real photo."""
    mu, sd = fitted_rows.mean(0), fitted_rows.std(0) + 1e-6
    z = (fitted_rows - mu) / sd
    covariance = torch.cov(z.T)
    covariance = (1 - SHRINK) * covariance + SHRINK * torch.diag(torch.diagonal(covariance))
    precision = torch.linalg.pinv(covariance, hermitian=True)
    return lambda new: (((new - mu) / sd) @ precision * ((new - mu) / sd)).sum(1)


def auroc(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """AUROC of any scores: torchmetrics reads scores outside [0, 1] as logits and squashes them, which ties large
    ones, so they are rescaled to [0, 1] first (in float64, keeping their order)."""
    from torchmetrics.functional.classification import binary_auroc

    scores = scores.double()
    return float(binary_auroc((scores - scores.min()) / (scores.max() - scores.min()), truth.long()))


def cross_validated(x: torch.Tensor, owner: torch.Tensor, y: torch.Tensor, fold: torch.Tensor) -> tuple[float, float]:
    """Mean test AUROC and accuracy (at logit 0) over the folds; `x` has a row per crop of image `owner`."""
    aurocs, accuracies = [], []
    for k in fold.unique():
        test = fold[owner] == k
        scorer = logistic(x[~test], y[owner[~test]])
        test_owner = torch.unique(owner[test], return_inverse=True)[1]
        scores = per_image(scorer(x[test]), test_owner)
        truth = y[fold == k]
        aurocs.append(auroc(scores, truth))
        accuracies.append(float(((scores > 0).float() == truth).float().mean()))
    return sum(aurocs) / len(aurocs), sum(accuracies) / len(accuracies)


def features(stats: dict, parts: list[tuple[tuple[int, ...], tuple[str, ...]]]) -> torch.Tensor:
    return torch.cat([statistic(stats, b, s) for blocks, names in parts for b in blocks for s in names], 1)


def statistic(stats: dict, block: int, name: str) -> torch.Tensor:
    """One statistic of a block's maps [crops, channels]; fineness derived from the cached spreads by the net's
    formula (the net measures them on shifted maps, which differs in constant channels' rounding only)."""
    return fineness_of(stats[block, "detail"], stats[block, "std"]) if name == "fineness" else stats[block, name]


def report(stats: dict, owner: torch.Tensor, y: torch.Tensor, fold: torch.Tensor, blocks, names, fitted_on) -> None:
    x = features(stats, [(blocks, names)])
    if fitted_on == "grid mean":
        x, owner = per_image(x, owner), torch.arange(len(y))
    auroc, accuracy = cross_validated(x, owner, y, fold)
    label = f"blocks {', '.join(map(str, blocks))}; {', '.join(names)}; {fitted_on} ({x.shape[1]} values)"
    print(f"{label}: AUROC {auroc:.3f}, accuracy {accuracy:.3f}", flush=True)


class Collection:
    """One collection's crops' statistics, labels and owners, kept on disk; with extra training views when asked: a
    degraded copy of every image (labelled as it is), and reconstructions of its real photos (labelled AI). `scale`:
    every view of the collection downscaled by that factor first."""

    def __init__(
        self, root: Path, weights: Path, degrade: bool = False, reconstruct: bool = False, scale: float | None = None
    ) -> None:
        self.name = root.name
        files = image_files(root)
        self.y = torch.tensor([f.parent.name in AI_FOLDERS for f in files]).float()
        main, suffix = (judged_crops, "") if scale is None else (scaled_crops(scale), f"-scaled{scale:g}")
        self.stats, self.owner = self.cached(suffix, files, weights, main)
        self.extra = []  # (stats, owner, label of each crop): training views only
        if degrade:
            stats, owner = self.cached("-degraded", files, weights, degraded_crops)
            self.extra.append((stats, owner, self.y[owner]))
        if reconstruct:
            real = torch.nonzero(self.y == 0).flatten()
            stats, owner = self.cached("-reconstructed", [files[i] for i in real], weights, reconstructed_crops())
            self.extra.append((stats, real[owner], torch.ones(len(owner))))

    def cached(self, suffix: str, files: list[Path], weights: Path, crops_of: Callable[[Path, int], torch.Tensor]):
        """The backbone's statistics and the pixel traces of `files`' grids (`crops_of`), each kept on disk."""
        stats, owner = self.kept(suffix, files, lambda: block_statistics(files, weights, crops_of))
        traces, _ = self.kept(f"{suffix}-traces", files, lambda: traced(files, crops_of))
        return {**stats, **traces}, owner

    def kept(self, suffix: str, files: list[Path], measure: Callable[[], tuple[dict, torch.Tensor]]):
        path = RESULTS / "taps" / f"{self.name}{suffix}.pt"
        if path.exists():
            saved = torch.load(path, weights_only=False)
            if saved["files"] == [f.name for f in files]:
                return saved["stats"], saved["owner"]
        stats, owner = measure()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"files": [f.name for f in files], "stats": stats, "owner": owner}, path)
        return stats, owner

    def training_rows(self, parts, validation: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features, labels, weights) of every training crop, real and AI weighing one half each in the collection;
        every 7th image is kept apart as validation (`validation=True`: its crops, original views only)."""
        views = [(self.stats, self.owner, self.y[self.owner])] + ([] if validation else self.extra)
        keep = [(owner % VALIDATION_EVERY == 0) == validation for _, owner, _ in views]
        x = torch.cat([features(stats, parts)[k] for (stats, _, _), k in zip(views, keep, strict=True)])
        labels = torch.cat([label[k] for (_, _, label), k in zip(views, keep, strict=True)])
        weight = torch.where(labels == 1, 0.5 / labels.sum(), 0.5 / (1 - labels).sum())
        return x, labels, weight

    def validation_owner(self) -> torch.Tensor:
        """Each validation crop's image, numbered 0.. in `training_rows(validation=True)` order."""
        return torch.unique(self.owner[self.owner % VALIDATION_EVERY == 0], return_inverse=True)[1]

    def validation_images(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean score, label) of each validation image, from `scores` of its crops in `training_rows` order."""
        owner = self.owner[self.owner % VALIDATION_EVERY == 0]
        return per_image(scores, self.validation_owner()), self.y[owner.unique()]


def temperature(logits: torch.Tensor, truth: torch.Tensor) -> float:
    """The T that minimises the log loss of sigmoid(logit / T) (log-spaced from 0.1 to 100)."""
    grid = torch.logspace(-1, 2, 61)
    losses = torch.stack([F.binary_cross_entropy_with_logits(logits / t, truth) for t in grid])
    return float(grid[int(losses.argmin())])


def confidently_wrong(p: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Which answers are wrong at an AI probability under 0.1 or over 0.9."""
    return ((p > 0.9) & (truth == 0)) | ((p < 0.1) & (truth == 1))


def held_out_metrics(
    scores: torch.Tensor, truth: torch.Tensor, logits: bool, t: float = 1.0, t_across: float = 1.0
) -> dict[str, float]:
    metrics = {"auroc": auroc(scores, truth)}
    if logits:
        said_ai = scores > 0
        metrics["balanced"] = float((said_ai[truth == 1].float().mean() + (~said_ai[truth == 0]).float().mean()) / 2)
        for name, divisor in (("confidently_wrong", 1.0), ("tempered", t), ("across", t_across)):
            metrics[name] = float(confidently_wrong(torch.sigmoid(scores / divisor), truth).float().mean())
    return metrics


def across_temperature(others: list[Collection], parts) -> float:
    """The temperature fitted on generators the regression never saw: each training collection's validation images
    scored by a regression fitted on the other training collections only."""
    scored = []
    for held in others:
        rest = [c for c in others if c is not held]
        x, labels, weight = (torch.cat(t) for t in zip(*[c.training_rows(parts) for c in rest], strict=True))
        scored.append(held.validation_images(logistic(x, labels, weight)(held.training_rows(parts, True)[0])))
    return temperature(*(torch.cat(v) for v in zip(*scored, strict=True)))


def eces(judged: list[tuple[torch.Tensor, torch.Tensor]], temperatures: tuple[float, ...]) -> str:
    """The calibration error of (logits, truth) pairs at each temperature, for one table cell."""
    from detective.evaluation.metrics import expected_calibration_error

    scores, truth = (torch.cat(v) for v in zip(*judged, strict=True))
    return " / ".join(
        f"{expected_calibration_error(torch.sigmoid(scores / t), truth.long()):.2f}" for t in temperatures
    )


def across(collections: list[Collection]) -> None:
    """Leave each collection out in turn, per feature set and scorer; prints a Markdown table."""
    print("\n| features | scorer | " + " | ".join(f"{c.name} left out" for c in collections) + " |")
    print("|---|---|" + "---|" * len(collections))
    for name, parts in ACROSS_SETS.items():
        cells = {"logistic": [], "real photos only": []}
        for judged in collections:
            others = [c for c in collections if c is not judged]
            x, labels, weight = (torch.cat(t) for t in zip(*[c.training_rows(parts) for c in others], strict=True))
            test = features(judged.stats, parts)
            fitted = logistic(x, labels, weight)
            validation = [c.validation_images(fitted(c.training_rows(parts, True)[0])) for c in others]
            t = temperature(*(torch.cat(v) for v in zip(*validation, strict=True)))
            t_across = across_temperature(others, parts) if len(others) > 1 else t
            for scorer_name, scorer in (("logistic", fitted), ("real photos only", mahalanobis(x[labels == 0]))):
                scores = per_image(scorer(test), judged.owner)
                m = held_out_metrics(scores, judged.y, scorer_name == "logistic", t, t_across)
                cells[scorer_name].append(
                    f"{m['auroc']:.3f}"
                    + (
                        f" / {m['balanced']:.3f} / {m['confidently_wrong']:.0%} (T {t:.2g}: {m['tempered']:.0%};"
                        f" T across {t_across:.2g}: {m['across']:.0%};"
                        f" ECE held out {eces([(scores, judged.y)], (t, t_across))},"
                        f" validation {eces(validation, (t, t_across))})"
                        if "balanced" in m
                        else ""
                    )
                )
        for scorer_name, row in cells.items():
            print(f"| {name} | {scorer_name} | " + " | ".join(row) + " |", flush=True)
    print(
        "\nlogistic: AUROC / balanced accuracy at logit 0 / confidently wrong (with the temperature T fitted on the"
        " training collections' validation images: confidently wrong; with the one fitted across them: confidently"
        " wrong; ECE of the held-out collection and of the validation images at each); real photos only: AUROC"
    )


def image_aurocs(c: Collection, parts) -> torch.Tensor:
    """Each feature's own AUROC over a collection's images (the mean of its crops), AI above real: by ranks."""
    x = per_image(features(c.stats, parts), c.owner)
    ranks = x.argsort(0).argsort(0).double() + 1
    ai, real = c.y.sum(), (1 - c.y).sum()
    return ((ranks[c.y == 1].sum(0) - ai * (ai + 1) / 2) / (ai * real)).float()


def consistent(collections: list[Collection], margin: float) -> None:
    """Invariance across collections: the regression fitted only on the features whose AUROC lies on the same side of
    0.5, by at least `margin`, in every training collection; prints a Markdown table."""
    print(
        f"\n| features (AUROC off 0.5 by >= {margin:g} alike in every training collection) | "
        + " | ".join(f"{c.name} left out" for c in collections)
        + " |"
    )
    print("|---|" + "---|" * len(collections))
    for name, parts in ACROSS_SETS.items():
        row = []
        for judged in collections:
            others = [c for c in collections if c is not judged]
            aurocs = torch.stack([image_aurocs(c, parts) for c in others])
            keep = (aurocs > 0.5 + margin).all(0) | (aurocs < 0.5 - margin).all(0)
            if not keep.any():
                row.append("no feature kept")
                continue
            x, labels, weight = (torch.cat(t) for t in zip(*[c.training_rows(parts) for c in others], strict=True))
            fitted = logistic(x[:, keep], labels, weight)
            scores = per_image(fitted(features(judged.stats, parts)[:, keep]), judged.owner)
            m = held_out_metrics(scores, judged.y, logits=True)
            row.append(
                f"{m['auroc']:.3f} / {m['balanced']:.3f} / {m['confidently_wrong']:.0%} ({int(keep.sum())} kept)"
            )
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)
    print("\nAUROC / balanced accuracy at logit 0 / confidently wrong (features kept of the set)")


def diagonal_novelty(fitted_rows: torch.Tensor):
    """The net's novelty: the mean square of the rows standardised by the fitted rows' mean and variance (as the
    source head's first layer standardises them)."""
    mu, var = fitted_rows.mean(0), fitted_rows.var(0) + 1e-5
    return lambda new: ((new - mu) ** 2 / var).mean(1)


def crop_spread(logits: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """The standard deviation of each image's crop logits: how much its crops disagree."""
    mean = per_image(logits, owner)
    return (per_image(logits**2, owner) - mean**2).clamp_min(0).sqrt()


def novelty_measures(x: torch.Tensor, regression: Callable) -> dict[str, Callable]:
    """The unfamiliarity measures fitted on training crops `x`: name -> (crop rows, their images) -> per image."""
    diagonal, distance = diagonal_novelty(x), mahalanobis(x)
    return {
        "the net's (diagonal)": lambda rows, owner: per_image(diagonal(rows), owner),
        "Mahalanobis": lambda rows, owner: per_image(distance(rows), owner),
        "crop spread": lambda rows, owner: crop_spread(regression(rows), owner),
    }


def novelty(collections: list[Collection]) -> None:
    """Which measure would flag a left-out collection as unfamiliar, and would that catch its confidently wrong
    answers? Per feature set and measure, fitted on the other collections' training crops, the limit at
    UNFAMILIAR_QUANTILE of their validation images (as training sets `novelty_limit`); prints a Markdown table."""
    from detective.constants import UNFAMILIAR_QUANTILE

    print(
        "\n| features | measure | left out | flagged | flagged, validation | AUROC vs validation | confidently wrong: "
        "all / not flagged |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, parts in NOVELTY_SETS.items():
        for judged in collections:
            others = [c for c in collections if c is not judged]
            x, labels, weight = (torch.cat(t) for t in zip(*[c.training_rows(parts) for c in others], strict=True))
            regression = logistic(x, labels, weight)
            measures = novelty_measures(x, regression)
            test = features(judged.stats, parts)
            wrong = confidently_wrong(torch.sigmoid(per_image(regression(test), judged.owner)), judged.y)
            for measure, score in measures.items():
                held = score(test, judged.owner)
                validation = torch.cat([score(c.training_rows(parts, True)[0], c.validation_owner()) for c in others])
                limit = torch.quantile(validation, UNFAMILIAR_QUANTILE)
                flagged = held > limit
                both = torch.cat([torch.ones(len(held)), torch.zeros(len(validation))])
                print(
                    f"| {name} | {measure} | {judged.name} | {flagged.float().mean():.1%} | "
                    f"{(validation > limit).float().mean():.1%} | {auroc(torch.cat([held, validation]), both):.3f} | "
                    f"{wrong.float().mean():.1%} / {wrong[~flagged].float().mean():.1%} |",
                    flush=True,
                )


def instability(files: list[Path], weights: Path) -> dict[tuple[float, int], torch.Tensor]:
    """Per (noise, block): per image, 1 - the cosine similarity of a block's pooled features of its first
    `STABILITY_CROPS` judging crops with and without Gaussian noise of that standard deviation (in the normalised
    input's units), averaged over them."""
    trunk = frozen_trunk(weights)
    torch.manual_seed(0)

    def pooled(x: torch.Tensor) -> dict[int, torch.Tensor]:
        kept = {}
        for index, block in enumerate(trunk[: max(STABILITY_BLOCKS) + 1]):
            x = block(x)
            if index in STABILITY_BLOCKS:
                kept[index] = x.mean((2, 3))
        return kept

    scores: dict[tuple[float, int], list[float]] = {(n, b): [] for n in STABILITY_NOISE for b in STABILITY_BLOCKS}
    with torch.inference_mode():
        for index, path in enumerate(files):
            crops = normalized(judged_crops(path, index)[:STABILITY_CROPS])
            clean = pooled(crops)
            for noise in STABILITY_NOISE:
                noisy = pooled(crops + noise * torch.randn_like(crops))
                for b in STABILITY_BLOCKS:
                    scores[noise, b].append(float((1 - F.cosine_similarity(clean[b], noisy[b])).mean()))
    return {key: torch.tensor(v) for key, v in scores.items()}


def stability(roots: list[Path], weights: Path) -> None:
    """A score that needs no AI image to fit (RIGID's: real photos' features are steadier under small noise), so
    every collection is one it never saw: prints its AUROC per collection, noise and block."""
    print("\n| noise | block | " + " | ".join(root.name for root in roots) + " |")
    print("|---|---|" + "---|" * len(roots))
    measured = []
    for root in roots:
        files = image_files(root)
        truth = torch.tensor([f.parent.name in AI_FOLDERS for f in files]).float()
        measured.append((instability(files, weights), truth))
    for noise in STABILITY_NOISE:
        for b in STABILITY_BLOCKS:
            cells = [f"{auroc(scores[noise, b], truth):.3f}" for scores, truth in measured]
            print(f"| {noise:g} | {b} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = folds_parser(__doc__)
    parser.add_argument("--across", help="collections, comma-separated: leave each out in turn")
    parser.add_argument("--novelty", action="store_true", help="--across: which unfamiliarity measure flags it")
    parser.add_argument("--degraded", action="store_true", help="--across: train on a degraded copy of each too")
    parser.add_argument(
        "--reconstructed",
        action="store_true",
        help="--across: train on autoencoder reconstructions of each real photo too, as AI (benchmarks/reconstruct.py)",
    )
    parser.add_argument("--scale", type=float, help="judge every image downscaled by this factor first")
    parser.add_argument("--stability", action="store_true", help="--across: RIGID's noise stability, no fitting")
    parser.add_argument(
        "--consistent", type=float, metavar="MARGIN", help="--across: only features alike in every training collection"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # beside training runs on a shared machine: threads of one process wait on each other
    if args.across:
        roots = [Path(c) if "/" in c else REPO.parent / "shared" / "data" / c for c in args.across.split(",")]
        if args.stability:
            stability(roots, args.weights)
            return
        collections = [Collection(root, args.weights, args.degraded, args.reconstructed, args.scale) for root in roots]
        if args.consistent is not None:
            consistent(collections, args.consistent)
        else:
            (novelty if args.novelty else across)(collections)
        return
    files = image_files(args.data)
    y = torch.tensor([f.parent.name in AI_FOLDERS for f in files]).float()
    fold = torch.tensor(folds_of(files, args.folds))
    stats, owner = block_statistics(files, args.weights, None if args.scale is None else scaled_crops(args.scale))
    for block in BLOCKS:
        for names in (("mean", "std"), ("mean", "std", "detail")):
            report(stats, owner, y, fold, (block,), names, "every crop")
    for blocks, names, fitted_on in SETS:
        report(stats, owner, y, fold, blocks, names, fitted_on)


if __name__ == "__main__":
    main()
