"""Restoration networks: GFP-GAN (clean architecture) and its StyleGAN2 decoder."""

from vidrestore.models.gfpgan import GFPGAN, GFPGANConfig
from vidrestore.models.loading import build_from_state_dict, infer_config, load_restorer, read_checkpoint
from vidrestore.models.precision import autocast, default_precision, prepare_for_inference
from vidrestore.models.restorer import BatchRestorer
from vidrestore.models.stylegan2 import ModulatedConv2d, StyleGAN2GeneratorCSFT

__all__ = [
    "BatchRestorer",
    "GFPGAN",
    "GFPGANConfig",
    "ModulatedConv2d",
    "StyleGAN2GeneratorCSFT",
    "autocast",
    "build_from_state_dict",
    "default_precision",
    "infer_config",
    "load_restorer",
    "prepare_for_inference",
    "read_checkpoint",
]
