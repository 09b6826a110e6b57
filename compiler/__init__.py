"""FlexFlow compiler: ONNX (QDQ, power-of-two scales) to an instruction bundle. Never imports torch."""
