"""``axtrain pipeline``: train, export, compile, verify and simulate in one command, with stage reuse."""

from axtrain.pipeline.run import PipelineOptions, PipelineResult, run_pipeline

__all__ = ["PipelineOptions", "PipelineResult", "run_pipeline"]
