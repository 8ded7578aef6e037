"""A wheel install works like a checkout: built from the project, installed into a fresh virtual environment
that cannot see the checkout, and run from a folder outside it.

The new environment gets the already-installed dependencies through a .pth line naming their
site-packages (reinstalling torch would be slow); the checkout's editable-install hook lives there too,
but a .pth line only adds a folder to sys.path and never runs the .pth files inside it, so the new
environment imports vidrestore from the wheel alone (checked below).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import av
import pytest

from conftest import REPO_ROOT
from pipeline_support import cut_clip, make_tiny_restorer

PROJECT_FILES = ("pyproject.toml", "README.md", "vidrestore")  # what the build reads
CLIP = "facerec_short_hamilton_clip.mp4"  # 640x360 with one face, no B-frames
FRAMES = 4


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, failing the test with its output when it exits non-zero; returns its stdout."""
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(root: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation .` on a copy of the project (the build leaves the checkout alone)."""
    source = root / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", root / "dist", "."], cwd=source)
    (wheel,) = (root / "dist").glob("vidrestore-*.whl")
    return wheel


def site_packages(python: Path) -> Path:
    """The purelib folder of an interpreter's environment."""
    return Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=python.parent)
                .strip())


def make_venv(root: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed (no dependencies), then the current dependencies made visible."""
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], cwd=root)
    (site_packages(python) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    """The venv, a working folder outside the checkout, a short real clip and a tiny model in it."""
    root = tmp_path_factory.mktemp("wheel")
    venv = make_venv(root, build_wheel(root))
    work = root / "work"
    work.mkdir()
    cut_clip(media_dir / "videos" / CLIP, work / "clip.mp4", FRAMES)
    return {"venv": venv, "work": work, "model": make_tiny_restorer(work / "tiny.pth")}


def vidrestore(installed: dict[str, Path], *args: str, weights: Path | None = None) -> str:
    """Run the venv's `vidrestore` console script in the outside folder, offline, with its own HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDRESTORE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(installed["work"] / "home"), XDG_CACHE_HOME=str(installed["work"] / "cache"),
               VIDRESTORE_OFFLINE="1")
    if weights is not None:
        env["VIDRESTORE_WEIGHTS"] = str(weights)
    return run([installed["venv"] / "bin" / "vidrestore", *args], cwd=installed["work"], env=env)


def frame_count(path: Path) -> int:
    """How many frames the video stream of a file decodes to."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_the_package_comes_from_the_wheel_not_the_checkout(installed: dict[str, Path]):
    python = installed["venv"] / "bin" / "python"
    where = Path(run([python, "-c", "import vidrestore; print(vidrestore.__file__)"], cwd=installed["work"]).strip())
    assert where.is_relative_to(site_packages(python))
    assert not where.is_relative_to(REPO_ROOT)


def test_weights_list_reads_the_packaged_manifest(installed: dict[str, Path]):
    out = vidrestore(installed, "weights", "list")
    for name in ("GFPGANv1.4", "retinaface_mobile0.25", "detection_mobilenet0.25_Final.pth"):
        assert name in out
    assert str(REPO_ROOT) not in out  # no checkout weights/ folder is searched


def test_packaged_fast_preset_runs(installed: dict[str, Path]):
    out = installed["work"] / "fast.mp4"
    vidrestore(installed, "-q", "clip.mp4", out.name, "--config", "fast", "--model", "none", "--detector", "none",
               "--no-progress")
    assert frame_count(out) == FRAMES


def test_short_restore_with_a_tiny_model(installed: dict[str, Path], shared_dir: Path):
    out = installed["work"] / "restored.mkv"
    vidrestore(installed, "-q", "clip.mp4", out.name, "--model", str(installed["model"]), "--device", "cpu",
               "--det-size", "320", "--codec", "ffv1", "--no-progress", weights=shared_dir / "weights")
    assert frame_count(out) == FRAMES
