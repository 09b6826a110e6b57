"""The executor interface: what runs an ISA program over weight images and batches of inputs.

Two implementations compute the same integers (tests/runtime/test_executor.py checks both against
this interface and against each other):

* :class:`~axtrain.runtime.interpreter.ReferenceExecutor`: the reference interpreter, every PE one
  instruction at a time (the living definition of the ISA);
* :class:`~axtrain.runtime.execute.FastExecutor`: a typed plan run as numpy operations over the
  batch (and over the Monte Carlo runs), falling back to the reference for programs outside its plan.

An executor runs the program it was built with: a run's overrides are already applied to it
(runtime/overrides.py). Callers hold an :class:`Executor`, not a particular implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import Instruction

DEFAULT_CHUNK: int | None = None  # images per batch step; None: the executor's own choice
ExecutorResult = tuple[np.ndarray, dict[int, np.ndarray]]


class Executor(ABC):
    """Executes one program (``program``, on ``arch``) for batches of images and weight images."""

    program: tuple[Instruction, ...]
    arch: Architecture

    @abstractmethod
    def prepare(self, weight_image: np.ndarray, bias_image: np.ndarray, requant_image: np.ndarray | None = None) -> Any:
        """Per weight image work, passed to :meth:`run` / :meth:`run_many`. ``weight_image`` is one
        image ``[words]`` or a stack ``[runs, words]`` (one per Monte Carlo run); ``requant_image``
        is DRAM.Q (``[entries, 3]`` or its flat words; None: empty)."""

    @abstractmethod
    def run_many(
        self, prepared: Any, dram_a: np.ndarray, collect: bool = False, chunk: int | None = DEFAULT_CHUNK, region: tuple[int, int] | None = None
    ) -> ExecutorResult:
        """For every weight image of ``prepared``: the final activation DRAM ``[runs, n, words]``
        (int64), or only its words ``[start, start + count)`` if ``region`` is given, and, if
        ``collect``, every SYNC's output ``{layer: [runs, n, count]}`` (else ``{}``).

        ``dram_a`` is ``[n, words]`` with the quantised inputs placed (any numeric dtype holding
        integers; not modified); ``chunk`` is a hint of images per batch step."""

    def run(
        self, prepared: Any, dram_a: np.ndarray, collect: bool = False, chunk: int | None = DEFAULT_CHUNK, region: tuple[int, int] | None = None
    ) -> ExecutorResult:
        """:meth:`run_many` for a single weight image: ``[n, words]`` and ``{layer: [n, count]}``."""
        final, layers = self.run_many(prepared, dram_a, collect, chunk, region)
        return final[0], {key: value[0] for key, value in layers.items()}


def region_bounds(dram_a: np.ndarray, region: tuple[int, int] | None) -> tuple[int, int]:
    """``[lo, hi)`` activation words of ``region`` (``(start, count)``), all of them if None."""
    return (0, dram_a.shape[1]) if region is None else (region[0], region[0] + region[1])
