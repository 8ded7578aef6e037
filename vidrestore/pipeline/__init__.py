"""The data path of the main job: threaded stages (decode, analyse, restore, composite, encode),
the options that drive them, and the job and frame-level APIs."""

from vidrestore.pipeline.options import RestoreOptions, load_options
from vidrestore.pipeline.runner import Pipeline, StageTiming

__all__ = ["Pipeline", "RestoreOptions", "StageTiming", "load_options"]
