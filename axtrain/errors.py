"""The project's own error types.

Every failure a user can cause (a bad config, a corrupt ONNX file, a broken bundle, a missing data
file) is raised as an :class:`AxTrainError` subclass whose message is one readable line saying what is
wrong and where. The CLI turns these into ``error: <message>`` and exit code 2; anything else is a bug.
"""

from __future__ import annotations

#: Longest run of characters without a space that a message echoes (a node name, a path, a value);
#: longer ones are cut to this many characters, the last one an ellipsis.
MAX_ECHOED_CHARS = 200

#: Longest whole message: a message that still exceeds it (many long words) keeps its start.
MAX_MESSAGE_CHARS = 1000


def shorten(text: object, limit: int = MAX_ECHOED_CHARS) -> str:
    """``text`` as a string of at most ``limit`` characters (cut with a final ellipsis)."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def one_line(message: object) -> str:
    """A message as one line with every echoed word and the whole capped (the one place that does it).

    A user's string (a 100,000-character node name, a file name, a number of 5,000 digits) is echoed
    as one space-free word far more often than not, so each word is capped at
    :data:`MAX_ECHOED_CHARS`, then the line at :data:`MAX_MESSAGE_CHARS`."""
    words = [shorten(word) for word in str(message).split()]
    return shorten(" ".join(words), MAX_MESSAGE_CHARS)


class AxTrainError(Exception):
    """Base class of every error the user can cause. Its message is a single line."""

    def __init__(self, message: str) -> None:
        # Keep the CLI's promise of one short line even when a message embeds a multi-line cause
        # or a huge user string.
        super().__init__(one_line(message))


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


class OutputError(AxTrainError):
    """An output that cannot be written: a full disk, a read-only or unwritable folder, a path that
    is too long or runs through a file, or an output folder another process holds (its lock)."""
