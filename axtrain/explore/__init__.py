"""``axtrain explore``: per-layer multiplier modes and weight-SRAM voltage for the lowest energy within
an accuracy budget (docs/explore.md). ``replan`` rewrites bundles, ``search`` finds the plan."""
