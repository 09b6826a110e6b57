"""The documents shared by the two halves of the toolchain: the ONNX annotation schema, and the
bundle (ISA, architecture, manifest). Torch-free: the compiler and runtime import these."""
