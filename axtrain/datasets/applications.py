"""The six applications of the paper's Table 1: data set, network topology and NTV voltages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axtrain.datasets.split import n_held_out

#: LeNet-5 as used for mnist-cnn, layer by layer (input [N, 1, 28, 28]).
LENET5_LAYERS = "conv5x5x6 pad2, maxpool2, conv5x5x16, maxpool2, fc120, fc84, fc10"


@dataclass(frozen=True)
class Application:
    """One application: what it classifies, how big it is and which network runs it.

    Sizes are those of the bundled files; ``n_train``/``n_test`` are what :func:`axtrain.datasets.load`
    returns (a test asserts they agree).
    """

    name: str
    description: str
    dataset: str  #: raw data set key: wdbc, segmentation, ionosphere, sat or mnist
    n_samples: int  #: rows in the whole data set (train + test)
    n_features: int  #: input values per sample
    n_classes: int  #: classes present in the data
    n_train: int
    n_test: int
    kind: Literal["mlp", "cnn"]
    #: MLP: layer widths, input first, e.g. (30, 64, 64, 2). CNN: a name, e.g. "LeNet-5".
    topology: tuple[int, ...] | str
    input_shape: tuple[int, ...]  #: one sample's shape, without the batch dimension
    #: Weight-SRAM supply voltages of the paper's NTV experiment, (aggressive, conservative), in mV.
    sram_voltages_mv: tuple[int, int]

    @property
    def topology_text(self) -> str:
        """The topology as printed: "30-64-64-2", or "LeNet-5 (conv5x5x6 pad2, ...)" for the CNN."""
        if isinstance(self.topology, str):
            return f"{self.topology} ({LENET5_LAYERS})"
        return "-".join(str(width) for width in self.topology)


def _uci_split(n: int) -> tuple[int, int]:
    """(train, test) sizes of an 80/20 split; the test part is rounded up (see docs/data.md)."""

    test = n_held_out(n, 0.2)
    return n - test, test


def _mlp(
    name: str, description: str, dataset: str, n: int, widths: tuple[int, ...], classes: int, volts: tuple[int, int]
) -> Application:
    train, test = _uci_split(n) if dataset != "mnist" else (60000, 10000)
    return Application(
        name=name,
        description=description,
        dataset=dataset,
        n_samples=n,
        n_features=widths[0],
        n_classes=classes,
        n_train=train,
        n_test=test,
        kind="mlp",
        topology=widths,
        input_shape=(widths[0],),
        sram_voltages_mv=volts,
    )


_AGGRESSIVE_BC = (400, 660)
_OTHERS = (660, 850)

APPLICATIONS: dict[str, Application] = {
    app.name: app
    for app in (
        _mlp(
            "breast-cancer",
            "Breast Cancer Wisconsin (Diagnostic): malignant or benign from 30 cell-nucleus features",
            "wdbc",
            569,
            (30, 64, 64, 2),
            2,
            _AGGRESSIVE_BC,
        ),
        _mlp(
            "image-segmentation",
            "Image Segmentation: outdoor 3x3 region class (7) from 19 colour and texture features",
            "segmentation",
            2310,
            (19, 64, 64, 7),
            7,
            _OTHERS,
        ),
        _mlp(
            "ionosphere",
            "Ionosphere: good or bad radar return from 34 pulse-autocorrelation features",
            "ionosphere",
            351,
            (34, 50, 50, 2),
            2,
            _OTHERS,
        ),
        _mlp(
            "satimage",
            "Statlog (Landsat Satellite): soil class (6 present) from 36 multispectral pixel values",
            "sat",
            6435,
            (36, 64, 64, 7),
            6,
            _OTHERS,
        ),
        _mlp(
            "mnist-mlp",
            "MNIST handwritten digits, flattened 784 pixels, official 60k/10k split",
            "mnist",
            70000,
            (784, 128, 128, 10),
            10,
            _OTHERS,
        ),
        Application(
            name="mnist-cnn",
            description="MNIST handwritten digits as 1x28x28 images, official 60k/10k split",
            dataset="mnist",
            n_samples=70000,
            n_features=784,
            n_classes=10,
            n_train=60000,
            n_test=10000,
            kind="cnn",
            topology="LeNet-5",
            input_shape=(1, 28, 28),
            sram_voltages_mv=_OTHERS,
        ),
    )
}


def unknown_application_message(name: object) -> str:
    """The one line every command prints for an unknown application name: the name, the closest
    known names ("did you mean"), and the full list."""
    import difflib  # only on the error path

    known = list(APPLICATIONS)
    close = difflib.get_close_matches(str(name).lower(), known, n=2, cutoff=0.65) if isinstance(name, str) else []
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown application {str(name)[:80]!r}{hint} (known: {', '.join(known)})"
