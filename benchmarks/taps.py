"""Which MobileNetV2 blocks' statistics tell AI images from real photos: the measurement behind `model.source_taps`.

    uv run python benchmarks/taps.py [--data ../shared/data/realorai_dev] [--weights ...] [--folds 3]

For every image, the frozen ImageNet backbone runs on its judging grid of native 224 px crops; each block's maps give
a per-channel mean and standard deviation, averaged over the crops. A logistic regression (L2, standardised
features) on one block's statistics, or on a set of blocks', is cross-validated on the same stratified folds as
`benchmarks/detect.py`; the mean test AUROC over folds is printed per block and per set.
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

BLOCKS = (1, 3, 6, 10, 13, 16, 18)
SETS = ((3, 6, 10), (3, 10), (1, 3, 6, 10), (3, 6, 10, 13, 16))


def block_statistics(files: list[Path], weights: Path) -> dict[int, torch.Tensor]:
    """Per image and block: per-channel mean and standard deviation of the block's maps, averaged over the grid."""
    import torchvision

    from detective.constants import IMAGENET_MEAN, IMAGENET_STD
    from detective.data.transforms import load_image
    from detective.data.views import grid_crops

    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    trunk = net.features.eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    stats: dict[int, list[torch.Tensor]] = {b: [] for b in BLOCKS}
    with torch.inference_mode():
        for path in files:
            x = (grid_crops(load_image(path), 224, 16).float() / 255 - mean) / std
            for index, block in enumerate(trunk):
                x = block(x)
                if index in stats:
                    stats[index].append(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).mean(0))
    return {b: torch.stack(v) for b, v in stats.items()}


def fitted_scores(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, l2: float = 1e-2) -> torch.Tensor:
    """A logistic regression on standardised `train` rows (labels `y`), converged by L-BFGS; its scores on `test`."""
    mu, sd = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mu) / sd, (test - mu) / sd
    w = torch.zeros(train.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.binary_cross_entropy_with_logits(train @ w + b, y) + l2 * (w**2).sum()
        value.backward()
        return value

    opt.step(loss)
    return (test @ w + b).detach()


def cross_validated_auroc(x: torch.Tensor, y: torch.Tensor, fold: torch.Tensor) -> float:
    """Mean test AUROC over the folds."""
    from torchmetrics.functional.classification import binary_auroc

    scores = [
        float(binary_auroc(fitted_scores(x[fold != k], y[fold != k], x[fold == k]), y[fold == k].long()))
        for k in fold.unique()
    ]
    return sum(scores) / len(scores)


def main() -> None:
    args = folds_parser(__doc__).parse_args()
    files = image_files(args.data)
    y = torch.tensor([f.parent.name in ("ai", "1_fake") for f in files]).float()
    fold = torch.tensor(folds_of(files, args.folds))
    stats = block_statistics(files, args.weights)
    for blocks in [(b,) for b in BLOCKS] + list(SETS):
        x = torch.cat([stats[b] for b in blocks], 1)
        auroc = cross_validated_auroc(x, y, fold)
        print(f"blocks {', '.join(map(str, blocks))} ({x.shape[1]} values): AUROC {auroc:.3f}", flush=True)


if __name__ == "__main__":
    main()
