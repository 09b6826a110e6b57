"""Training: BP, AxTrain-act, AxTrain-pas, AxTrain, ApproxAnn; export to annotated fixed-point ONNX."""
