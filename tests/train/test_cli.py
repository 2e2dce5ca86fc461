"""`train.py --help` as a user reads it: what detective is, the commands to start with, the options to pick."""

import subprocess
import sys

from tests.helpers import REPO


def test_help_says_what_detective_is_and_offers_only_options_to_pick():
    done = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    help_text = done.stdout
    assert help_text.startswith("detective says two things about every image: what it shows")
    assert "powered by Hydra" not in help_text
    assert "python train.py data.root=~/my_dataset" in help_text  # commands as the user started this one
    assert "python predict.py cat.jpg" in help_text
    groups = dict(line.split(": ", 1) for line in help_text.splitlines() if line.startswith(("trainer: ", "data: ")))
    trainers = groups["trainer"].split(", ")
    assert {"cpu", "gpu", "ddp"} <= set(trainers)
    assert "default" not in trainers  # the base every trainer option extends is not a choice
    assert "trainer_base" not in help_text
