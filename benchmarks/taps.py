"""What of the frozen MobileNetV2 tells AI images from real photos: the measurement behind `model.source_taps`,
`model.source_statistics` and `model.source_loss`.

    uv run python benchmarks/taps.py [--data ../shared/data/realorai_dev] [--weights ...] [--folds 3]

For every image, the frozen ImageNet backbone runs on its judging grid of native 224 px crops; each block's maps give
per-channel statistics (`TAP_STATISTICS`: mean, standard deviation, detail) per crop. A logistic regression (L2,
standardised features) is cross-validated on the same stratified folds as `benchmarks/detect.py`, fitted either on
every crop labelled as its image ("every crop", what `source_loss: crop` trains) or on the statistics averaged over
each image's grid ("grid mean"); an image's score is the mean of its crops' logits. Prints the mean test AUROC and
accuracy (at logit 0) over folds per block and per set of blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from detect import folds_of, folds_parser, image_files  # noqa: E402

from detective.model.net import TAP_STATISTICS  # noqa: E402

BLOCKS = (0, 1, 2, 3, 4, 6, 8, 10, 13, 16, 18)  # reported one by one
EARLY = tuple(range(11))  # every block down to the 14x14 maps
# (blocks, statistics, fitted on): the sets compared
SETS = (
    ((3, 6, 10), ("mean", "std"), "grid mean"),  # the default before
    ((3, 6, 10), ("mean", "std"), "every crop"),
    (EARLY, ("mean", "std"), "every crop"),
    (EARLY, ("mean", "std", "detail"), "grid mean"),
    (EARLY, ("mean", "std", "detail"), "every crop"),  # the default
    ((0, 2, 4, 8, 10), ("mean", "std", "detail"), "every crop"),
)
L2 = 1e-4


def block_statistics(files: list[Path], weights: Path) -> dict[tuple[int, str], torch.Tensor]:
    """Per (block, statistic), every block: [images, crops, channels], over each image's judging grid."""
    import torchvision

    from detective.constants import IMAGENET_MEAN, IMAGENET_STD
    from detective.data.transforms import load_image
    from detective.data.views import grid_crops

    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    trunk = net.features.eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    stats: dict[tuple[int, str], list[torch.Tensor]] = {(b, s): [] for b in range(len(trunk)) for s in TAP_STATISTICS}
    with torch.inference_mode():
        for path in files:
            x = (grid_crops(load_image(path), 224, 16).float() / 255 - mean) / std
            for index, block in enumerate(trunk):
                x = block(x)
                for name, statistic in TAP_STATISTICS.items():
                    stats[index, name].append(statistic(x))
    return {key: torch.stack(v) for key, v in stats.items()}


def fitted_scores(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """A logistic regression on standardised `train` rows [N, crops, D] (labels `y` [N], one per image, for every
    crop of it), converged by L-BFGS; the mean of its logits over each `test` image's crops."""
    rows, labels = train.flatten(0, 1), y.repeat_interleave(train.shape[1])
    mu, sd = rows.mean(0), rows.std(0) + 1e-6
    w = torch.zeros(rows.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.binary_cross_entropy_with_logits((rows - mu) / sd @ w + b, labels) + L2 * (w**2).sum()
        value.backward()
        return value

    opt.step(loss)
    return (((test - mu) / sd @ w + b).mean(1)).detach()


def cross_validated(x: torch.Tensor, y: torch.Tensor, fold: torch.Tensor) -> tuple[float, float]:
    """Mean test AUROC and accuracy (at logit 0) over the folds."""
    from torchmetrics.functional.classification import binary_auroc

    aurocs, accuracies = [], []
    for k in fold.unique():
        test = fold == k
        scores = fitted_scores(x[~test], y[~test], x[test])
        aurocs.append(float(binary_auroc(scores, y[test].long())))
        accuracies.append(float(((scores > 0).float() == y[test]).float().mean()))
    return sum(aurocs) / len(aurocs), sum(accuracies) / len(accuracies)


def report(stats: dict, y: torch.Tensor, fold: torch.Tensor, blocks, names, fitted_on: str) -> None:
    x = torch.cat([stats[b, s] for b in blocks for s in names], 2)
    if fitted_on == "grid mean":
        x = x.mean(1, keepdim=True)
    auroc, accuracy = cross_validated(x, y, fold)
    label = f"blocks {', '.join(map(str, blocks))}; {', '.join(names)}; {fitted_on} ({x.shape[2]} values)"
    print(f"{label}: AUROC {auroc:.3f}, accuracy {accuracy:.3f}", flush=True)


def main() -> None:
    args = folds_parser(__doc__).parse_args()
    files = image_files(args.data)
    y = torch.tensor([f.parent.name in ("ai", "1_fake") for f in files]).float()
    fold = torch.tensor(folds_of(files, args.folds))
    stats = block_statistics(files, args.weights)
    for block in BLOCKS:
        for names in (("mean", "std"), ("mean", "std", "detail")):
            report(stats, y, fold, (block,), names, "every crop")
    for blocks, names, fitted_on in SETS:
        report(stats, y, fold, blocks, names, fitted_on)


if __name__ == "__main__":
    main()
