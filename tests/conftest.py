"""Shared test fixtures: where ../shared lives, and small helpers every test module may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDRESTORE_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder with specs, golden vectors, weights and media."""
    if not SHARED.is_dir():
        pytest.fail(f"shared test data not found at {SHARED} (set VIDRESTORE_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


@pytest.fixture(scope="session")
def detector_weights(shared_dir: Path) -> Path:
    """The real RetinaFace mobilenet0.25 weights."""
    return shared_dir / "weights" / "detection_mobilenet0.25_Final.pth"
