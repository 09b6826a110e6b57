"""The data sets of the paper's six applications, bundled and loaded offline.

    >>> from axtrain.datasets import APPLICATIONS, load, split_validation
    >>> data = load("breast-cancer", seed=0)
    >>> data.x_train.shape, data.x_test.shape
    ((455, 30), (114, 30))

Files live in ``files/`` beside this module (license and checksums in ``files/NOTICE.md``); nothing is
downloaded. See docs/data.md for the split and standardisation choices.
"""

from __future__ import annotations

from axtrain.datasets.applications import APPLICATIONS, LENET5_LAYERS, Application, unknown_application_message
from axtrain.datasets.loader import TEST_FRACTION, DataSplit, get_application, load
from axtrain.datasets.raw import DEFAULT_DATA_DIR, SHA256
from axtrain.datasets.split import split_validation

__all__ = [
    "APPLICATIONS",
    "DEFAULT_DATA_DIR",
    "LENET5_LAYERS",
    "SHA256",
    "TEST_FRACTION",
    "Application",
    "DataSplit",
    "get_application",
    "unknown_application_message",
    "load",
    "split_validation",
]
