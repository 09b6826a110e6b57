"""AxTrain: training for approximate inference, and the toolchain that deploys it."""

__version__ = "0.1.0"
