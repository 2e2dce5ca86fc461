"""detective as its users get it, each way training the tiny demo run from the configs in `conf/` (installed as the
package `detective.conf`): a fresh clone through its `train.py` and `uv run`, which installs the clone editable,
the clone's console script from another folder (the editable install alone), and the wheel, built, installed into
a fresh virtual environment and run from a folder outside the clone."""

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
TINY = ["trainer.max_epochs=1", "data.demo.per_subject=8", "data.num_workers=0", "data.image_size=32"]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def shell_env(bin_dir: Path | None = None) -> dict[str, str]:
    """A user's shell: nothing pointing at this clone or its .venv; `bin_dir` (an activated venv) first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DETECTIVE_OUTPUT")}
    clone_bin = Path(sys.prefix, "bin").resolve()  # `uv run` puts this clone's scripts on PATH
    path = [p for p in env["PATH"].split(os.pathsep) if p and Path(p).resolve() != clone_bin]
    return {**env, "PATH": os.pathsep.join([*([str(bin_dir)] if bin_dir else []), *path])}


def train_tiny(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run `cmd` with the tiny demo overrides in `cwd`, check the run folder it made under `cwd/outputs`; its output."""
    done = run([*cmd, *TINY, "data.source_crops=1"], cwd=cwd, env=env)
    (run_dir,) = (cwd / "outputs" / "runs").iterdir()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "train.log").is_file()
    return done.stdout


def where_imported(python: str, cwd: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """Where `python` run in `cwd` imports the package and its configs from."""
    code = "import detective, detective.conf; print(detective.__file__); print(detective.conf.__file__)"
    package, configs = run([python, "-c", code], cwd, env).stdout.split()
    return Path(package), Path(configs)


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
    """A user's shell with the new venv activated."""
    return shell_env(venv_bin)


def test_wheel_holds_every_module_config_and_console_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "detective").rglob("*.py")}
    assert "detective/train/cli.py" in modules and modules <= names  # pyproject.toml lists every package
    configs = {f"detective/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
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
    package, configs = where_imported("python", tmp_path, user_env)
    assert package.is_relative_to(venv_bin.parent) and configs.is_relative_to(venv_bin.parent)  # not the clone's
    printed = train_tiny(["detective-train"], tmp_path, user_env)
    (suggested,) = (line for line in printed.splitlines() if line.startswith("Predict with:"))
    command = shlex.split(suggested.removeprefix("Predict with:"))
    assert command[0] == "detective-predict"
    predicted = run(command, cwd=tmp_path, env=user_env)
    assert "Object: " in predicted.stdout and "Source: " in predicted.stdout


def copy_of_the_clone(folder: Path) -> Path:
    """A fresh clone of this working tree in `folder`: the files git would hand over (tracked, or new and not
    ignored), no .venv, egg-info or outputs."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    root = folder / "detective"
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():  # a tracked file deleted in the working tree is listed too
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    return root


def test_a_fresh_clone_trains_through_train_py_and_its_editable_install_from_another_folder(tmp_path):
    """The README's first command, `uv run python train.py`, in a fresh clone: `uv run` makes its .venv and installs
    the clone into it, editable. Then that install alone (no clone on sys.path): its console script, elsewhere."""
    clone = copy_of_the_clone(tmp_path)
    train_tiny([UV, "run", "python", "train.py", "test=false"], clone, shell_env())  # testing: the wheel run
    clone_files = (clone / "detective" / "__init__.py", clone / "conf" / "__init__.py")
    assert where_imported(str(clone / ".venv" / "bin" / "python"), clone, shell_env()) == clone_files
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = shell_env(clone / ".venv" / "bin")
    assert where_imported("python", elsewhere, env) == clone_files
    train_tiny(["detective-train", "test=false"], elsewhere, env)
