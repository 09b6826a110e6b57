"""``axtrain pipeline``: train, export, compile, verify and simulate in one command, with stage reuse."""

from axtrain.pipeline.run import PipelineOptions, PipelineResult, run_pipeline

__all__ = ["PipelineOptions", "PipelineResult", "run_pipeline"]

from axtrain.callable_module import make_callable  # noqa: E402 - after the module's own names

make_callable(__name__)  # axtrain.pipeline(...) is the API function, also once this package is imported
