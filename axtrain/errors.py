"""The project's own error types.

Every failure a user can cause (a bad config, a corrupt ONNX file, a broken bundle, a missing data
file) is raised as an :class:`AxTrainError` subclass whose message is one readable line saying what is
wrong and where. The CLI turns these into ``error: <message>`` and exit code 2; anything else is a bug.
"""

from __future__ import annotations


class AxTrainError(Exception):
    """Base class of every error the user can cause. Its message is a single line."""

    def __init__(self, message: str) -> None:
        # Keep the CLI's promise of one line even when a message embeds a multi-line cause.
        super().__init__(" ".join(str(message).split()))


class ConfigError(AxTrainError):
    """An invalid configuration file or option value."""


class DataError(AxTrainError):
    """A missing or corrupt data-set file, or an unknown application."""


class HardwareModelError(AxTrainError):
    """A hardware-model parameter out of range (unknown multiplier mode, voltage outside the model)."""


class OnnxError(AxTrainError):
    """An ONNX file that cannot be read or lies outside the supported subset."""


class BundleError(AxTrainError):
    """A bundle that is missing files, fails its hashes, or has an unknown format version."""


class RunError(AxTrainError):
    """A run directory that is missing, incomplete or inconsistent."""
