"""The compiler passes, in pipeline order. Each is a pure function ``CompilerIR -> CompilerIR``."""
