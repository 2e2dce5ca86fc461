"""detective as `pip install` gives it: the wheel is built, installed into a fresh virtual environment, and its
console scripts run from a folder outside the clone, so the configs must come from inside the package."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

UV = shutil.which("uv")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(UV is None, reason="builds and installs with uv (pip install uv)")]
SCRIPTS = ("detective-train", "detective-predict", "detective-label")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built as an index would build it: the sdist first, the wheel from the sdist (no stale build/ in the clone)."""
    dist = tmp_path_factory.mktemp("dist")
    run([UV, "build", "--out-dir", str(dist), str(REPO)], cwd=REPO)
    (found,) = dist.glob("*.whl")
    return found


@pytest.fixture(scope="module")
def venv_bin(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel and its dependencies at uv.lock's versions, so they come from
    uv's cache (hard links: seconds, where a new resolution could download torch again)."""
    tmp = tmp_path_factory.mktemp("venv")
    pins = tmp / "requirements.txt"
    export = [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-o", str(pins)]
    run(export, cwd=REPO)
    run([UV, "venv", "--quiet", str(tmp / "venv")], cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    run([UV, "pip", "install", "--quiet", "--python", str(python), "-r", str(pins), str(wheel)], cwd=tmp)
    return python.parent


@pytest.fixture
def user_env(venv_bin) -> dict[str, str]:
    """A user's shell with the new venv activated, nothing pointing at the clone or its .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DETECTIVE_OUTPUT")}
    clone_bin = Path(sys.prefix, "bin").resolve()  # `uv run` puts the clone's scripts on PATH
    path = [p for p in env["PATH"].split(os.pathsep) if p and Path(p).resolve() != clone_bin]
    return {**env, "PATH": os.pathsep.join([str(venv_bin), *path])}


def test_wheel_holds_every_config_and_the_console_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(REPO).as_posix() for p in (REPO / "detective" / "conf").rglob("*.yaml")}
    assert "detective/conf/train.yaml" in configs and configs <= names
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{name} = " in scripts for name in SCRIPTS)


def test_console_scripts_answer_help_from_any_folder(user_env, tmp_path):
    helps = {name: run([name, "--help"], cwd=tmp_path, env=user_env).stdout for name in SCRIPTS}
    assert helps["detective-train"].startswith("detective says two things about every image")
    assert "detective-train data.root=~/my_dataset" in helps["detective-train"]
    assert "trainer: cpu, ddp, ddp_cpu, gpu" in helps["detective-train"]
    assert helps["detective-predict"].startswith("usage: detective-predict ")
    assert helps["detective-label"].startswith("usage: detective-label ")


def test_installed_train_writes_its_run_folder_here_and_its_predict_command_works(venv_bin, user_env, tmp_path):
    where = run(["python", "-c", "import detective; print(detective.__file__)"], tmp_path, user_env)
    assert Path(where.stdout.strip()).is_relative_to(venv_bin.parent)  # the wheel's copy, not the clone
    tiny = ["trainer.max_epochs=1", "data.demo.per_subject=8", "data.num_workers=0", "data.image_size=32"]
    done = run(["detective-train", *tiny, "data.source_crops=1"], cwd=tmp_path, env=user_env)
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "train.log").is_file()
    (suggested,) = (line for line in done.stdout.splitlines() if line.startswith("Predict with:"))
    command = shlex.split(suggested.removeprefix("Predict with:"))
    assert command[0] == "detective-predict"
    predicted = run(command, cwd=tmp_path, env=user_env)
    assert "Object: " in predicted.stdout and "Source: " in predicted.stdout
