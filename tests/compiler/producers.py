"""A corpus of quantized ONNX files made by the real producers users quantize with (docs/importing.md):
Brevitas ``export_onnx_qcdq`` and ``export_qonnx`` (fixed-point quantizers), QONNX's ``QuantToQCDQ``,
onnxruntime's ``quantize_static`` (QDQ), and torch fake-quant exports with power-of-two scales.

Each :class:`Case` builds one file in a directory and says what the compiler must do with it: compile
(then match onnxruntime bit for bit), or refuse with a message matching ``refusal``. Builders import
torch, brevitas and qonnx inside themselves, so this module imports without them; ``missing()`` says
which producer package a case needs and whether it is installed.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURES, HIDDEN, CLASSES = 16, 12, 4
IMAGE = (1, 12, 12)


@dataclass(frozen=True)
class Case:
    """One corpus file: ``build(dir) -> path``; ``refusal`` None if it must compile."""

    name: str
    producer: str  # brevitas | qonnx | onnxruntime | torch
    setting: str
    build: Callable[[Path], Path]
    refusal: str | None = None
    needs: tuple[str, ...] = ()
    bitwise: bool = True  # False: non-power-of-two scales, within the bound of docs/numerics.md (1 output LSB)

    def missing(self) -> str | None:
        """The reason to skip: a producer package that is not installed (the ``producers`` extra)."""
        for package in self.needs:
            if importlib.util.find_spec(package) is None:
                return f"{package} is not installed (pip install -c constraints.txt -e '.[producers]')"
        return None


def calibration(shape: tuple[int, ...], n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(n, *shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Brevitas (fixed-point quantizers: power-of-two scales)
# ---------------------------------------------------------------------------------------------


def _brevitas_model(kind: str, bits: int, bias: bool, out_quant: bool) -> Any:
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias, Uint8ActPerTensorFixedPoint

    torch.manual_seed(bits * 10 + bias)
    common: dict[str, Any] = {"weight_quant": Int8WeightPerTensorFixedPoint, "weight_bit_width": bits, "bias": bias, "bias_quant": Int32Bias if bias else None}

    def act(signed: bool = True) -> Any:
        quant = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
        return quant

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=act(), bit_width=bits, return_quant_tensor=True)
            if kind == "cnn":
                self.conv = qnn.QuantConv2d(1, 4, 3, padding=1, return_quant_tensor=True, **common)
                self.relu0 = qnn.QuantReLU(act_quant=act(False), bit_width=bits, return_quant_tensor=True)
                self.pool = torch.nn.MaxPool2d(2, 2)  # keeps the QuantTensor's quantisation
                fan_in = 4 * 6 * 6
            else:
                fan_in = FEATURES
            self.l1 = qnn.QuantLinear(fan_in, HIDDEN, return_quant_tensor=True, **common)
            self.relu1 = qnn.QuantReLU(act_quant=act(False), bit_width=bits, return_quant_tensor=True)
            self.l2 = qnn.QuantLinear(HIDDEN, CLASSES, return_quant_tensor=False, output_quant=act() if out_quant else None, **common)

        def forward(self, x: Any) -> Any:
            x = self.inp(x)
            if kind == "cnn":
                x = self.pool(self.relu0(self.conv(x)))
                x = x.view(x.shape[0], -1) if hasattr(x, "view") else x.flatten(1)
            return self.l2(self.relu1(self.l1(x)))

    net = Net().eval()
    with torch.no_grad():  # calibrate the fixed-point activation scales
        net.train()
        for _ in range(4):
            net(torch.from_numpy(calibration(IMAGE if kind == "cnn" else (FEATURES,))))
        net.eval()
    return net


def brevitas_qcdq(kind: str, bits: int, bias: bool, out_quant: bool, opset: int, dynamic: bool) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        import torch
        from brevitas.export import export_onnx_qcdq

        net = _brevitas_model(kind, bits, bias, out_quant)
        x = torch.from_numpy(calibration(IMAGE if kind == "cnn" else (FEATURES,), n=2))
        path = directory / "brevitas.onnx"
        extra: dict[str, Any] = {"dynamic_axes": {"input": {0: "batch"}}} if dynamic else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx_qcdq(net, args=x, export_path=str(path), opset_version=opset, dynamo=False, input_names=["input"], **extra)
        return path

    return build


def brevitas_qonnx(kind: str, bits: int, bias: bool, out_quant: bool, to_qcdq: bool) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        import onnx
        import torch
        from brevitas.export import export_qonnx

        net = _brevitas_model(kind, bits, bias, out_quant)
        x = torch.from_numpy(calibration(IMAGE if kind == "cnn" else (FEATURES,), n=2))
        path = directory / "qonnx.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_qonnx(net, args=x, export_path=str(path))
        model = onnx.load(str(path))
        if to_qcdq:
            from qonnx.core.modelwrapper import ModelWrapper
            from qonnx.transformation.infer_shapes import InferShapes
            from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ
            from qonnx.util.cleanup import cleanup_model

            wrapper = cleanup_model(ModelWrapper(model)).transform(InferShapes())
            model = wrapper.transform(QuantToQCDQ()).model
        out = directory / ("qonnx_qcdq.onnx" if to_qcdq else "qonnx_quant.onnx")
        onnx.save(model, str(out))
        return out

    return build


# ---------------------------------------------------------------------------------------------
# torch fake-quant with power-of-two scales; float models for onnxruntime's quantizer
# ---------------------------------------------------------------------------------------------


def _float_model(kind: str, bias: bool, fake_quant: bool, bits: int = 8) -> Any:
    import torch

    torch.manual_seed(7)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def fq(t: Any, frac: int) -> Any:
        return torch.fake_quantize_per_tensor_affine(t, 2.0**-frac, 0, lo, hi) if fake_quant else t

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if kind == "cnn":
                self.conv = torch.nn.Conv2d(1, 4, 3, padding=1, bias=bias)
                fan_in = 4 * 6 * 6
            else:
                fan_in = FEATURES
            self.l1 = torch.nn.Linear(fan_in, HIDDEN, bias=bias)
            self.l2 = torch.nn.Linear(HIDDEN, CLASSES, bias=bias)

        def forward(self, x: Any) -> Any:
            x = fq(x, 4)
            if kind == "cnn":
                x = torch.nn.functional.conv2d(x, fq(self.conv.weight, 6), self.conv.bias, padding=1)
                x = fq(torch.relu(x), 3)
                x = torch.nn.functional.max_pool2d(x, 2)
                x = x.view(x.shape[0], -1)
            x = fq(torch.relu(torch.nn.functional.linear(x, fq(self.l1.weight, 6), self.l1.bias)), 3)
            return fq(torch.nn.functional.linear(x, fq(self.l2.weight, 6), self.l2.bias), 2)

    net = Net().eval()
    if fake_quant:
        import torch

        with torch.no_grad():  # biases on the grid 2**-9 of every accumulator (s_a * s_w), as fixed-point training leaves them
            for module in (net.l1, net.l2, *((net.conv,) if kind == "cnn" else ())):
                if module.bias is not None:
                    module.bias.copy_(torch.round(module.bias * 2**9) / 2**9)
    return net


def torch_fake_quant(kind: str, bias: bool, opset: int, dynamo: bool, dynamic: bool) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        import torch

        net = _float_model(kind, bias, fake_quant=True)
        x = torch.from_numpy(calibration(IMAGE if kind == "cnn" else (FEATURES,), n=2))
        path = directory / "torch_fq.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
                torch.onnx.export(net, (x,), str(path), input_names=["input"], opset_version=opset, dynamo=True, dynamic_shapes=shapes, verbose=False)
            else:
                extra = {"dynamic_axes": {"input": {0: "batch"}}} if dynamic else {}
                torch.onnx.export(net, (x,), str(path), input_names=["input"], opset_version=opset, dynamo=False, **extra)
        return path

    return build


def ort_static(kind: str, bias: bool, setting: str) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        import torch
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        net = _float_model(kind, bias, fake_quant=False)
        shape = IMAGE if kind == "cnn" else (FEATURES,)
        float_path = directory / "float.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(calibration(shape, n=2)),), str(float_path), input_names=["input"], opset_version=17, dynamo=False)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.data = iter([{"input": calibration(shape, n=2, seed=i)} for i in range(8)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.data, None)

        options: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"quant_format": QuantFormat.QDQ}
        if setting in ("s8s8", "per-channel"):
            kwargs.update(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            options.update(ActivationSymmetric=True, WeightSymmetric=True)
        if setting == "per-channel":
            kwargs["per_channel"] = True
        path = directory / f"ort_{setting}.onnx"
        quantize_static(str(float_path), str(path), Reader(), extra_options=options, **kwargs)
        return path

    return build


def corpus() -> list[Case]:
    """Every corpus file (the slow tier runs all; the default tier a few, see test_producers.py)."""
    cases: list[Case] = []
    brevitas = ("torch", "brevitas", "onnxoptimizer")
    for kind in ("mlp", "cnn"):
        for bits in (8, 4):
            for bias in (True, False):
                for out_quant in (True, False):
                    refusal = None  # a float output: REQ into 16 bits when it fits (4 bits), else STA (ISA 2)
                    for opset in ((13, 17, 21) if out_quant else (17,)):
                        for dynamic in ((False, True) if opset == 17 else (False,)):
                            name = f"brevitas-qcdq-{kind}-{bits}b-{'bias' if bias else 'nobias'}-{'qout' if out_quant else 'fout'}-op{opset}{'-dyn' if dynamic else ''}"
                            cases.append(Case(name, "brevitas", f"export_onnx_qcdq {bits}-bit {kind}", brevitas_qcdq(kind, bits, bias, out_quant, opset, dynamic), refusal, brevitas))
                    for to_qcdq in (False, True):
                        name = f"qonnx-{'qcdq' if to_qcdq else 'quant'}-{kind}-{bits}b-{'bias' if bias else 'nobias'}-{'qout' if out_quant else 'fout'}"
                        cases.append(Case(name, "qonnx", f"export_qonnx{' + QuantToQCDQ' if to_qcdq else ''} {bits}-bit {kind}", brevitas_qonnx(kind, bits, bias, out_quant, to_qcdq), refusal, (*brevitas, "qonnx")))
        for bias in (True, False):
            for opset, dynamo, dynamic in ((13, False, False), (17, False, True), (18, True, False), (21, True, False)):  # dynamo + dynamic batch cannot trace fake_quantize (torch 2.13)
                name = f"torch-fq-{kind}-{'bias' if bias else 'nobias'}-op{opset}{'-dynamo' if dynamo else ''}{'-dyn' if dynamic else ''}"
                cases.append(Case(name, "torch", f"fake_quantize_per_tensor_affine 2**-f, {'dynamo' if dynamo else 'TorchScript'} exporter", torch_fake_quant(kind, bias, opset, dynamo, dynamic), None, ("torch",)))
            for setting in ("default-u8s8", "s8s8", "per-channel"):
                name = f"ort-{setting}-{kind}-{'bias' if bias else 'nobias'}"
                # ISA 2: non-power-of-two scales requantise by multipliers (within 1 LSB of onnxruntime's
                # float path); the default's asymmetric zero points fold into biases, and a padded Conv's
                # border reads CONV.padv = the zero point (decision 185).
                cases.append(Case(name, "onnxruntime", f"quantize_static QDQ {setting}", ort_static(kind, bias, setting), None, ("torch", "onnxruntime"), bitwise=False))
    return cases
