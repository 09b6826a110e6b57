"""``axtrain explore``: per-layer multiplier modes and weight-SRAM voltage for the lowest energy within
an accuracy budget (docs/explore.md). ``search`` finds the plan; the bundle rewrite it evaluates and
writes is the compiler's (``axtrain.compiler.replan``)."""
