"""Predict with a trained checkpoint: `python predict.py cat.jpg [images, folders, globs] [--checkpoint best.ckpt]`.

See `python predict.py --help` and README.md; everything lives in `detective.predict`.
"""

import os
import sys

from detective.predict.cli import main

if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `predict.py folder | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    sys.exit(status)
