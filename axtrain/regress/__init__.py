"""Regression on compiled artifacts: semantic bundle diff, pinned simulation figures, ONNX cross-checks."""
