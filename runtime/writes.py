"""Which copies of its words each neuron-buffer write of the fast plan must store (runtime/execute.py).

The fast executor keeps each word twice: its value (code 0, read by ADD, POOL, AVGPOOL, the spill
copies and the STN/SYNC read-outs) and, per approximate mode, its DRUM transform (read by the DISTNs
of that mode's MACs). ``transform_targets`` (runtime/plan.py) decides per word address over the
whole program; a word written by one layer and read by another at the same address may need only
one of the two for that write: ResNet-8's first convolution of each residual block feeds only the
second one's DISTNs (its values are never read), the second one feeds only the ADD (its transforms
are never read). A write whose words no later step reads in that form before they are written again
need not store that form: the buffer's stale words there are never read. Same integers.

Reads are followed per buffer (the shared one and the per-run one, runtime/plan.py's
``mark_shared``), each from the step that last wrote the word there.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from axtrain.runtime.plan import Add, AvgPool, Copy, Gather, Load, Mac, Plan, Pool, Requantize, Store, Sync, written


class Needed(NamedTuple):
    """Per writing step number: whether a later step reads the words it wrote as values
    (``values``) or as DRUM transforms (``transforms``, any approximate mode)."""

    values: frozenset[int]
    transforms: frozenset[int]


def needed_copies(plan: Plan, collect: bool) -> Needed:
    """The writes whose values, and those whose transforms, a later read sees (see the module
    docstring); a SYNC reads its layer's words only when the run collects the layer outputs (``collect``).

    Conservative where it is cheap to be: every STN reads its words (also one outside the region a
    run returns), a DISTN of an exact MAC reads the values, and a spill copy that copies its
    source's transforms reads them."""
    words = plan.nb_words + 1
    last = {True: np.full(words, -1, dtype=np.int64), False: np.full(words, -1, dtype=np.int64)}  # shared?, per word
    values = np.zeros(len(plan.steps) + 1, dtype=bool)  # per step number; the last entry takes "no writer"
    transforms = np.zeros(len(plan.steps) + 1, dtype=bool)
    approximate = any(code != 0 for code in plan.codes)

    def read(idx: np.ndarray, shared: bool, into: np.ndarray) -> None:
        into[last[shared][idx]] = True  # -1 (read before any write) marks the last entry

    def read_modes(idx: np.ndarray, shared: bool) -> None:
        if 0 in plan.codes:
            read(idx, shared, values)
        if approximate:
            read(idx, shared, transforms)

    for number, step in enumerate(plan.steps):
        if isinstance(step, Gather):
            read_modes(step.idx, step.shared)
        elif isinstance(step, Mac) and step.fused is not None:
            read_modes(np.arange(step.fused.start, step.fused.start + step.fused.k), step.shared_input)
        elif isinstance(step, Store) or (isinstance(step, Sync) and collect):
            read(step.idx, step.shared, values)
        elif isinstance(step, (Pool, AvgPool)):
            read(step.src, step.shared, values)
        elif isinstance(step, Add):
            read(step.a, step.shared, values)
            read(step.b, step.shared, values)
        elif isinstance(step, Copy):
            read(step.src, step.shared, values)
            if step.transforms_copied:
                read(step.src if step.transform_sel is None else step.src[step.transform_sel], step.shared, transforms)
        if isinstance(step, (Load, Requantize, Pool, AvgPool, Add, Copy)):
            target = written(step)
            for shared in ((True, False) if step.mirror else (True,)) if step.shared else (False,):
                last[shared][target] = number
    return Needed(frozenset(np.flatnonzero(values[:-1]).tolist()), frozenset(np.flatnonzero(transforms[:-1]).tolist()))
