"""vidrestore: face restoration for video with a GFP-GAN generative facial prior.

    import vidrestore
    vidrestore.restore_video("in.mp4", "out.mp4", vidrestore.RestoreOptions(model="GFPGANv1.4"))
    vidrestore.Restorer().restore_frame(rgb)

The torch-heavy parts are imported on first use, so `import vidrestore` (and `vidrestore --help`) stay fast.
"""

from __future__ import annotations

from typing import Any

from vidrestore.errors import VidrestoreError

__version__ = "0.1.0"

_LAZY = {
    "RestoreOptions": "vidrestore.pipeline.options",
    "load_options": "vidrestore.pipeline.options",
    "restore_video": "vidrestore.pipeline.job",
    "restore_image": "vidrestore.pipeline.job",
    "JobReport": "vidrestore.pipeline.job",
    "Restorer": "vidrestore.pipeline.restorer_api",
}

__all__ = ["VidrestoreError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the public API's heavy modules only when one of their names is used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidrestore' has no attribute {name!r}")
