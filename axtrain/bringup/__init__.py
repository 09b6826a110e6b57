"""Bring-up kit: HDL/C views of the ISA, testbench files, traces and RTL-dump comparison (docs/bringup.md)."""
