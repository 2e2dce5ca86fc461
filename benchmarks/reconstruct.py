"""Self-made "AI" images: real photos passed through a small autoencoder trained here on real photos only.

Its decoder upsamples as generators' decoders do (transposed convolutions), so a reconstruction keeps a photo's
content and adds upsampling and decoder traces: an AI example aligned in content with its real one (AutoGAN's and
B-Free's idea), made without any downloaded generator. `benchmarks/taps.py --reconstructed` measures what such
examples add to training across collections.

    uv run python benchmarks/reconstruct.py [--photos ../shared/data/cats_dogs_real ...] [--steps 4000]

trains the autoencoder on random crops of the photos (none of the collections it is then measured on) and keeps it
in benchmarks/results/taps/autoencoder.pt with its last mean error; taps.py's statistics of reconstructions made by
an earlier one are removed.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from detect import RESULTS, image_files  # noqa: E402

AUTOENCODER = RESULTS / "taps" / "autoencoder.pt"
PATCH = 64  # training crops
BATCH = 16
JPEG_QUALITY = (75, 95)  # reconstructions are saved as JPEG, as generated images usually are


def autoencoder() -> nn.Sequential:
    """Down by 4 to 16 channels, back up through two stride-2 transposed convolutions; small enough to train on a
    CPU in minutes."""
    return nn.Sequential(
        nn.Conv2d(3, 24, 3, 1, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(24, 32, 4, 2, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 16, 4, 2, 1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(16, 32, 4, 2, 1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(32, 24, 4, 2, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(24, 3, 3, 1, 1),
    )


def random_patches(images: list[torch.Tensor], rng: random.Random) -> torch.Tensor:
    """A batch of random PATCH-px crops, flipped at random, as floats in [0, 1]."""
    patches = []
    for _ in range(BATCH):
        image = rng.choice(images)
        h, w = image.shape[-2:]
        top, left = rng.randint(0, h - PATCH), rng.randint(0, w - PATCH)
        patch = image[:, top : top + PATCH, left : left + PATCH]
        patches.append(patch.flip(-1) if rng.random() < 0.5 else patch)
    return torch.stack(patches).float() / 255


def train(photos: list[Path], steps: int) -> tuple[nn.Sequential, float]:
    """The autoencoder fitted (L1) to random crops of `photos`, and its last batch's mean error in levels of 255."""
    from detective.data.transforms import load_image

    torch.manual_seed(0)
    rng = random.Random(0)
    images = [image for image in map(load_image, photos) if min(image.shape[-2:]) >= PATCH]
    net = autoencoder()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    start = time.perf_counter()
    for step in range(steps):
        x = random_patches(images, rng)
        loss = (net(x) - x).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step}: L1 {loss.item() * 255:.2f} levels ({time.perf_counter() - start:.0f} s)", flush=True)
    return net.eval(), loss.item() * 255


def load() -> nn.Sequential:
    """The autoencoder `main` trained (run it first)."""
    if not AUTOENCODER.exists():
        raise SystemExit(f"{AUTOENCODER} is missing: run `python benchmarks/reconstruct.py` first")
    net = autoencoder()
    net.load_state_dict(torch.load(AUTOENCODER, weights_only=True)["state_dict"])
    return net.eval()


def reconstructed(net: nn.Module, crops: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 crops (K, 3, S, S) through `net`, rounded to uint8 and saved as a JPEG of a quality drawn from `seed`."""
    from detective.data.transforms import load_image

    with torch.inference_mode():
        out = net(crops.float() / 255).clamp(0, 1).mul(255).round().to(torch.uint8)
    quality = random.Random(seed).randint(*JPEG_QUALITY)
    saved = []
    for crop in out:
        buffer = io.BytesIO()
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
        saved.append(load_image(io.BytesIO(buffer.getvalue())))
    return torch.stack(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        default=[REPO.parent / "shared" / "data" / p for p in ("cats_dogs_real", "photos")],
    )
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    net, error = train([f for folder in args.photos for f in image_files(folder)], args.steps)
    AUTOENCODER.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "steps": args.steps, "l1_levels": error}, AUTOENCODER)
    for stale in AUTOENCODER.parent.glob("*-reconstructed.pt"):  # made by the previous autoencoder
        stale.unlink()
    print(f"Wrote {AUTOENCODER}")


if __name__ == "__main__":
    main()
