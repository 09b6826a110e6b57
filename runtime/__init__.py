"""Cycle-level FlexFlow simulator: executes bundles with approximate multipliers and NTV faults. Never imports torch."""
