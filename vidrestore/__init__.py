"""vidrestore: face restoration for video with a GFP-GAN generative facial prior."""

from vidrestore.errors import VidrestoreError

__version__ = "0.1.0"

__all__ = ["VidrestoreError", "__version__"]
