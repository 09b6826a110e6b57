"""Size and shape limits on what a user's file may declare, checked before anything is allocated.

A hostile or corrupt file must not make axtrain allocate memory it declares but does not hold (an
ONNX tensor of dims ``[2**40]``, a ``.npy`` header with a huge shape, a bundle whose architecture
asks for terabytes of PE memory). Every reader checks the declared sizes against these limits, and
against the bytes actually present, first; a violation is the reader's own one-line error
(``OnnxError``, ``BundleError``, ``ConfigError``) naming the tensor or file.

The limits are far above anything the paper's networks need (LeNet-5 has 61,706 parameters; its
largest activation map is 6x28x28 = 4,704 values) and low enough that, together, a single command
stays within :data:`MEMORY_BOUND_BYTES` of extra memory beyond the size of its input files
(docs/hardening.md states the bound; tests/hardening checks it under ``RLIMIT_AS``).

This module imports nothing heavy: the compiler, the runtime and the formats all use it.
"""

from __future__ import annotations

import math
from typing import Iterable

from axtrain.errors import AxTrainError, ConfigError

#: Largest file axtrain reads whole (an ONNX model, one external-data file, one bundle file).
MAX_FILE_BYTES = 1 << 30  # 1 GiB

#: Largest number of elements of one declared tensor (an ONNX initializer, the network's input per
#: sample, a golden vector file). 16 Mi elements: 128 MiB once widened to int64.
MAX_TENSOR_ELEMENTS = 1 << 24

#: Largest total number of initializer elements of one ONNX model (the compiler widens weights to int64).
MAX_MODEL_ELEMENTS = 1 << 25

#: Largest rank of a declared tensor.
MAX_RANK = 8

#: Machine state the reference interpreter may hold for one batch of images (its buffers and PE
#: memories, int64 words). Larger golden sets run in several batches; a single image needing more
#: is refused.
MAX_INTERPRETER_STATE_BYTES = 256 << 20  # 256 MiB

#: The bound the fuzz tests enforce with ``RLIMIT_AS``: no case may need more address space than
#: this beyond what the loaded toolchain already holds. Every limit above fits well inside it.
MEMORY_BOUND_BYTES = 1 << 30  # 1 GiB


def element_count(dims: Iterable[int], what: str, error: type[AxTrainError], limit: int = MAX_TENSOR_ELEMENTS) -> int:
    """The number of elements of a declared shape, refused (``error``, naming ``what``) when a
    dimension is negative, the rank exceeds :data:`MAX_RANK`, or the count exceeds ``limit``.

    Computed with Python integers, so a product that would overflow int64 is caught, not wrapped.
    """
    dims = [int(d) for d in dims]
    if len(dims) > MAX_RANK:
        raise error(f"{what}: rank {len(dims)} exceeds the limit of {MAX_RANK}")
    if any(d < 0 for d in dims):
        raise error(f"{what}: negative dimension in shape {dims}")
    count = math.prod(dims)
    if count > limit:
        shown = dims if len(str(dims)) <= 80 else f"{str(dims)[:77]}...]"
        raise error(f"{what}: shape {shown} declares {count} elements, more than the limit of {limit}")
    return count


# ---------------------------------------------------------------------------------------------
# Numbers a user types (options and config keys), bounded at the edge
# ---------------------------------------------------------------------------------------------
#
# A number past these is refused with one line before any work starts (``--seed 2**70`` used to
# fail inside torch, ``threads: 2**31`` inside OpenMP, ``--runs 10**12`` by allocating 829 TiB).
# Each bound is far above any sensible use and low enough that the work it sizes fits the machine.

#: Largest seed: 32 bits, what every generator in reach takes (numpy's legacy ``RandomState``
#: the narrowest; torch's take 64 bits and the trainer adds offsets to its seed).
MAX_SEED = (1 << 32) - 1

#: Largest number of NTV Monte Carlo runs of one simulation (the paper uses 50). The work runs in
#: passes of bounded size; what grows with the runs is one predicted class per run and input
#: (one byte each for up to 256 classes).
MAX_RUNS = 10_000

#: Largest number of training epochs of one phase.
MAX_EPOCHS = 100_000

#: Largest mini-batch (samples) and number of probe samples.
MAX_BATCH_SIZE = 1 << 20

#: Largest CPU thread count (torch threads, reproduction jobs).
MAX_THREADS = 1024

#: Largest number of random operand pairs ``axtrain hw drum`` draws (several int64 arrays of it).
MAX_SAMPLES = 10**8

#: Bounds of the integer keys of a training config (trainer/config.py checks them).
TRAIN_CONFIG_BOUNDS: dict[str, int] = {
    "seed": MAX_SEED,
    "epochs": MAX_EPOCHS,
    "pas_epochs": MAX_EPOCHS,
    "batch_size": MAX_BATCH_SIZE,
    "probe_samples": MAX_BATCH_SIZE,
    "ntv_eval_runs": MAX_RUNS,
    "converge_patience": MAX_EPOCHS,
    "threads": MAX_THREADS,
}


def check_at_most(name: str, value: int | None, limit: int, error: type[AxTrainError]) -> None:
    """Refuse ``value`` above ``limit`` (``error`` naming ``name``); None passes."""
    if value is not None and value > limit:
        raise error(f"{name}: {value} exceeds the limit of {limit}")


def check_range(name: str, value: int | None, low: int, high: int, error: type[AxTrainError] | None = None) -> None:
    """Refuse ``value`` outside ``[low, high]`` with one line naming the option (None passes)."""
    if value is None:
        return
    if error is None:
        error = ConfigError
    if value < low:
        raise error(f"{name} must be at least {low}, got {value}")
    if value > high:
        raise error(f"{name}: {value} exceeds the limit of {high}")


# ---------------------------------------------------------------------------------------------
# Raising the model-size limits (issue 15): `axtrain compile --max-elements N`
# ---------------------------------------------------------------------------------------------

#: Weight words one bundle can address: LDW's DRAM operand is a 32-bit word address (ISA v2).
ADDRESSABLE_WEIGHT_WORDS = 1 << 32

#: Memory the compiler needs per initializer element at its peak (int64 widening, the weight image
#: in int64 and its two text and binary renderings, golden forward passes): measured 3.1 GiB for the
#: 30.5 M elements of 784-4096-4096-3000-10, about 107 bytes each, rounded up.
COMPILE_BYTES_PER_ELEMENT = 128


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    import os  # here: the rest of this module imports nothing beyond the standard math/typing

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def element_ceiling(memory_bytes: int | None = None) -> int:
    """The most initializer elements ``--max-elements`` may allow: what the ISA can address and what
    this machine's memory can compile (never below the defaults)."""
    memory = machine_memory_bytes() if memory_bytes is None else memory_bytes
    by_memory = memory // COMPILE_BYTES_PER_ELEMENT if memory else MAX_MODEL_ELEMENTS
    return max(MAX_MODEL_ELEMENTS, min(ADDRESSABLE_WEIGHT_WORDS, by_memory))


def model_element_limits(max_elements: int | None, error: type[AxTrainError], memory_bytes: int | None = None) -> tuple[int, int]:
    """``(per tensor, in all)`` element limits of one ONNX model: the defaults
    (:data:`MAX_TENSOR_ELEMENTS`, :data:`MAX_MODEL_ELEMENTS`) when ``max_elements`` is None, else
    ``max_elements`` for both once checked against :func:`element_ceiling` (``error`` otherwise)."""
    if max_elements is None:
        return MAX_TENSOR_ELEMENTS, MAX_MODEL_ELEMENTS
    ceiling = element_ceiling(memory_bytes)
    if isinstance(max_elements, bool) or not isinstance(max_elements, int) or not 1 <= max_elements <= ceiling:
        raise error(
            f"--max-elements must be an integer from 1 to {ceiling} (the ISA's {ADDRESSABLE_WEIGHT_WORDS} addressable weight words, "
            f"or this machine's memory at {COMPILE_BYTES_PER_ELEMENT} bytes per element), got {max_elements!r}"
        )
    return max_elements, max_elements
