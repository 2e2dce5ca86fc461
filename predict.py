"""Predict with a trained checkpoint: `python predict.py cat.jpg [images, folders, globs] [--checkpoint best.ckpt]`.

See `python predict.py --help` and README.md; everything lives in `detective.predict` (installed: `detective-predict`).
"""

from detective.predict.cli import run

if __name__ == "__main__":
    run()
