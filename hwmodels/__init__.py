"""Numerical models of the hardware shared by trainer, compiler and runtime (numpy only)."""
