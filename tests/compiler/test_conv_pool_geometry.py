"""Conv and pool geometry that onnxruntime accepts and ISA 1/early ISA 2 refused (issue 16): a padded
Conv whose input has a zero point (``CONV.padv``), dilated Convs (zero taps, decision 187),
``ceil_mode=1`` pools and ``count_include_pad=1`` average pools (decision 186).

Each graph is built here with onnx.helper as a QDQ graph at power-of-two scales, compiled, and its
outputs compared with onnxruntime (QDQ fusions off) bit for bit on seeded random inputs, through the
fast executor (its typed plan, not the interpreter fallback) and the reference interpreter; the
bundle's golden vectors (the hwmodels reference) must verify, and the reference and fast cycle
simulators agree on every count. What is still out is refused in one
line naming the node.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.errors import OnnxError
from axtrain.formats.arch import DEFAULT_ARCH, Architecture
from axtrain.formats.bundle import Bundle, load_bundle
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.runtime.events import instruction_context
from axtrain.runtime.execute import FastExecutor, output_floats, output_integers, place_inputs
from axtrain.runtime.interpreter import ReferenceExecutor
from axtrain.runtime.overrides import override_program
from axtrain.runtime.simulator import simulate_fast
from axtrain.runtime.simulator_reference import simulate_reference
from axtrain.runtime.verify import verify_bundle

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference of this comparison")

DTYPES = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.UINT16: np.uint16}


class Net:
    """A QDQ graph under construction (power-of-two scales; tensors carry (frac, dtype, zero point))."""

    def __init__(self, shape: list[int], frac: int = 5, dtype: int = TensorProto.INT8, zero: int = 0, seed: int = 0) -> None:
        self.shape = shape
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.quant: dict[str, tuple[int, int, int]] = {}
        self.x = self.qdq("input", frac, dtype, zero)

    def _id(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def _init(self, stem: str, array: np.ndarray) -> str:
        name = self._id(stem)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def qdq(self, tensor: str, frac: int, dtype: int = TensorProto.INT8, zero: int = 0) -> str:
        scale = self._init("s", np.array(2.0**-frac, dtype=np.float32))
        z = self._init("z", np.array(zero, dtype=DTYPES[dtype]))
        q, dq = self._id("q"), self._id("dq")
        self.nodes.append(helper.make_node("QuantizeLinear", [tensor, scale, z], [q], name=q))
        self.nodes.append(helper.make_node("DequantizeLinear", [q, scale, z], [dq], name=dq))
        self.quant[dq] = (frac, dtype, zero)
        return dq

    def conv(self, x: str, out_ch: int, kernel: tuple[int, int], out_frac: int, in_ch: int, group: int = 1, relu: bool = True, **attrs: Any) -> str:
        """Conv (int8 weights at 2**-7, int32 bias) [+ Relu] + Q/DQ int8 at ``2**-out_frac``."""
        f_a = self.quant[x][0]
        w = self.rng.integers(-64, 64, size=(out_ch, in_ch // group, *kernel)).astype(np.int8)
        b = self.rng.integers(-2000, 2000, size=out_ch).astype(np.int32)
        zw, zb = self._init("zw", np.array(0, dtype=np.int8)), self._init("zb", np.array(0, dtype=np.int32))
        w_dq, b_dq = self._id("w_dq"), self._id("b_dq")
        self.nodes.append(helper.make_node("DequantizeLinear", [self._init("w", w), self._init("sw", np.array(2.0**-7, dtype=np.float32)), zw], [w_dq], name=w_dq))
        self.nodes.append(helper.make_node("DequantizeLinear", [self._init("b", b), self._init("sb", np.array(2.0 ** -(f_a + 7), dtype=np.float32)), zb], [b_dq], name=b_dq))
        name = self._id("conv")
        self.nodes.append(helper.make_node("Conv", [x, w_dq, b_dq], [name], name=name, kernel_shape=list(kernel), group=group, **attrs))
        if relu:
            r = self._id("relu")
            self.nodes.append(helper.make_node("Relu", [name], [r], name=r))
            name = r
        return self.qdq(name, out_frac)

    def pool(self, x: str, op: str, kernel: tuple[int, int], out_frac: int | None = None, **attrs: Any) -> str:
        """MaxPool (its output keeps the input's quantisation) or AveragePool + Q/DQ at ``out_frac``."""
        name = self._id(op.lower())
        self.nodes.append(helper.make_node(op, [x], [name], name=name, kernel_shape=list(kernel), **attrs))
        if op == "MaxPool":
            self.quant[name] = self.quant[x]
            return name
        assert out_frac is not None
        return self.qdq(name, out_frac)

    def model(self, output: str) -> onnx.ModelProto:
        for node in self.nodes:
            node.output[:] = ["output" if o == output else o for o in node.output]
        graph = helper.make_graph(
            self.nodes, "geometry", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *self.shape])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "C", "H", "W"])], initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
        onnx.checker.check_model(model)
        return model


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.log_severity_level = 3  # onnx's shape inference and onnxruntime disagree on some ceil_mode shapes: runtime wins
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x})[0])


def _compile(model: onnx.ModelProto, tmp_path: Path, arch: Architecture = DEFAULT_ARCH) -> tuple[Path, Bundle]:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    ir = compile_model(path, arch)
    write_compiled_bundle(ir, tmp_path / "b")
    return path, load_bundle(tmp_path / "b")


def _check(model: onnx.ModelProto, tmp_path: Path, arch: Architecture = DEFAULT_ARCH, n: int = 48, seed: int = 4) -> Bundle:
    """Compile; the fast executor equals onnxruntime bit for bit and the interpreter word for word
    on the activation DRAM; the golden vectors verify. Returns the bundle."""
    path, bundle = _compile(model, tmp_path, arch)
    assert verify_bundle(tmp_path / "b").ok
    fmt = bundle.manifest.input.fixed_point
    low, high = (fmt.qmin - fmt.zero_point) * fmt.scale * 1.1, (fmt.qmax - fmt.zero_point) * fmt.scale * 1.1
    x = np.random.default_rng(seed).uniform(low, high, size=(n, *bundle.manifest.input.shape)).astype(np.float32)
    dram = place_inputs(x, bundle.manifest.input.format, bundle.manifest.input.dram, bundle.manifest.activation_words)
    fast = FastExecutor(bundle.program, bundle.arch)
    assert fast.plan.fast, fast.plan.reason  # the typed plan, not the interpreter fallback
    final, _ = fast.run(fast.prepare(bundle.weights, bundle.bias), dram)
    got = output_floats(bundle, output_integers(bundle, final))
    expected = _onnxruntime(path, x).reshape(got.shape)
    assert np.unique(expected).size > 8  # outputs that vary: the comparison proves something
    assert int(np.sum(got.view(np.int32) != expected.view(np.int32))) == 0
    interpreter = ReferenceExecutor(bundle.program, bundle.arch)
    reference, _ = interpreter.run(interpreter.prepare(bundle.weights, bundle.bias), dram[:6])
    assert np.array_equal(reference, final[:6])
    context = instruction_context(bundle.program, bundle.arch, bundle.layers)
    assert simulate_reference(bundle.program, bundle.arch, context).as_dict() == simulate_fast(bundle.program, bundle.arch, context).as_dict()
    return bundle


def _convs(bundle: Bundle) -> list[dict[str, int]]:
    return [ins.operands() for ins in bundle.program if ins.op == "CONV"]


# --- CONV.padv: a padded Conv whose input has a zero point -----------------------------------------

@pytest.mark.parametrize("dtype,zero,pads,strides,group", [
    (TensorProto.UINT8, 113, [1, 1, 1, 1], [1, 1], 1),  # onnxruntime's quantizer: asymmetric uint8 (128 would be read as int8)
    (TensorProto.UINT8, 37, [0, 1, 2, 1], [2, 1], 1),  # asymmetric pads and strides
    (TensorProto.INT8, -7, [2, 2, 2, 2], [2, 2], 3),  # signed, grouped (depthwise: 3 groups of 1 channel)
])
def test_padded_conv_reads_the_input_zero_point(dtype: int, zero: int, pads: list[int], strides: list[int], group: int, tmp_path: Path) -> None:
    net = Net([3, 7, 7], frac=5, dtype=dtype, zero=zero, seed=1)
    x = net.conv(net.x, 6, (3, 3), out_frac=3, in_ch=3, group=group, pads=pads, strides=strides)
    x = net.conv(x, 4, (3, 3), out_frac=2, in_ch=6, pads=[1, 1, 1, 1], relu=False)  # zero point 0: padv 0
    bundle = _check(net.model(x), tmp_path)
    convs = _convs(bundle)
    assert {c["padv"] for c in convs[:group]} == {zero} and convs[-1]["padv"] == 0


def test_padv_under_drum_is_the_transformed_zero_point_in_the_fast_path(tmp_path: Path) -> None:
    """DRUM transforms the padding word too (the interpreter multiplies padv as an operand): the
    fast executor's padded gathers agree word for word under drum:1 and drum:3."""
    net = Net([2, 6, 6], frac=4, dtype=TensorProto.UINT8, zero=203, seed=2)  # 203 = 0b11001011: DRUM changes it
    x = net.conv(net.x, 5, (3, 3), out_frac=2, in_ch=2, pads=[1, 2, 1, 0])
    _, bundle = _compile(net.model(x), tmp_path)
    fmt = bundle.manifest.input.fixed_point
    inputs = np.random.default_rng(3).uniform(-fmt.zero_point * fmt.scale, (fmt.qmax - fmt.zero_point) * fmt.scale, size=(5, 2, 6, 6)).astype(np.float32)
    dram = place_inputs(inputs, bundle.manifest.input.format, bundle.manifest.input.dram, bundle.manifest.activation_words)
    outputs = []
    for mode in ("drum:1", "drum:3"):
        program = override_program(bundle.program, parse_mode(mode))
        fast = FastExecutor(program, bundle.arch)
        assert fast.plan.fast and any(step.padv == 203 for step in fast.plan.steps if step.op == "DISTN"), fast.plan.reason
        got, _ = fast.run(fast.prepare(bundle.weights, bundle.bias), dram)
        interpreter = ReferenceExecutor(program, bundle.arch)
        expected, _ = interpreter.run(interpreter.prepare(bundle.weights, bundle.bias), dram)
        assert np.array_equal(got, expected)
        outputs.append(output_integers(bundle, got))
    assert not np.array_equal(outputs[0], outputs[1])  # the modes differ: the check is not vacuous


def test_padv_in_spilled_bands(tmp_path: Path) -> None:
    """A spilled padded conv (row bands with their own top/bottom padding) reads the zero point at
    the map's border only."""
    net = Net([2, 12, 12], frac=5, dtype=TensorProto.UINT8, zero=100, seed=5)
    x = net.conv(net.x, 4, (3, 3), out_frac=3, in_ch=2, pads=[1, 1, 1, 1])
    x = net.conv(x, 2, (2, 2), out_frac=2, in_ch=4, strides=[2, 2], relu=False)
    bundle = _check(net.model(x), tmp_path, Architecture(neuron_buffer_bytes=512), n=12)
    assert any(ins.op == "SYNC" and ins["space"] == 1 for ins in bundle.program)  # it spilled
    first = [c for c in _convs(bundle) if c["c"] == 2 and c["kh"] == 3]
    assert len(first) > 1 and {c["padv"] for c in first} == {100}


def test_padv_beyond_its_field_is_refused_by_name(tmp_path: Path) -> None:
    net = Net([1, 4, 4], frac=0, dtype=TensorProto.UINT16, zero=40000, seed=0)
    x = net.conv(net.x, 2, (3, 3), out_frac=0, in_ch=1, pads=[1, 1, 1, 1])
    path = tmp_path / "m.onnx"
    onnx.save(net.model(x), path)
    with pytest.raises(OnnxError, match=r"^node 'conv\d+' \(Conv\): a padded Conv whose input has zero point 40000: CONV's pad value \(padv\) holds \[-32768, 32767\]$"):
        compile_model(path)


# --- dilated Conv: zero taps -----------------------------------------------------------------------

@pytest.mark.parametrize("dilations,pads,strides,dtype,zero", [
    ([2, 2], [2, 2, 2, 2], [1, 1], TensorProto.INT8, 0),
    ([1, 3], [0, 3, 1, 0], [2, 1], TensorProto.INT8, 0),
    ([3, 2], [1, 1, 1, 1], [1, 2], TensorProto.UINT8, 90),  # with the zero point at the border
])
def test_dilated_conv_matches_onnxruntime(dilations: list[int], pads: list[int], strides: list[int], dtype: int, zero: int, tmp_path: Path) -> None:
    net = Net([2, 9, 9], frac=5, dtype=dtype, zero=zero, seed=7)
    x = net.conv(net.x, 4, (3, 3), out_frac=3, in_ch=2, dilations=dilations, pads=pads, strides=strides)
    bundle = _check(net.model(x), tmp_path)
    conv = _convs(bundle)[0]
    assert (conv["kh"], conv["kw"]) == (2 * dilations[0] + 1, 2 * dilations[1] + 1)  # the kernel with zero taps
    record = bundle.layers[0]
    w = bundle.weights[record.weights.dram : record.weights.dram + record.weights.count].reshape(4, 2, conv["kh"], conv["kw"])
    taps = np.zeros(w.shape[1:], dtype=bool)
    taps[:, :: dilations[0], :: dilations[1]] = True
    assert np.all(w[:, ~taps] == 0) and np.count_nonzero(w[:, taps]) > 0


# --- pools: ceil_mode and count_include_pad --------------------------------------------------------

@pytest.mark.parametrize("op,attrs,shape", [
    ("MaxPool", {"strides": [2, 2], "ceil_mode": 1}, [3, 9, 8]),  # 3x3 windows: 9 rows -> 4 (as floor), 8 columns -> 4 (floor 3)
    ("MaxPool", {"strides": [2, 2], "ceil_mode": 1}, [3, 8, 6]),  # 8 -> 4 (floor 3), 6 -> 3 (floor 2)
    ("MaxPool", {"strides": [3, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}, [3, 8, 7]),
    ("AveragePool", {"strides": [2, 2], "ceil_mode": 1}, [3, 8, 6]),
    ("AveragePool", {"strides": [2, 3], "pads": [1, 1, 0, 1], "ceil_mode": 1}, [3, 8, 8]),
    ("AveragePool", {"strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}, [3, 7, 7]),
    ("AveragePool", {"strides": [1, 2], "pads": [2, 0, 1, 2], "count_include_pad": 1}, [3, 6, 7]),
    ("AveragePool", {"strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1, "ceil_mode": 1}, [3, 7, 7]),  # ceil = floor here
])
def test_pool_geometry_matches_onnxruntime(op: str, attrs: dict[str, Any], shape: list[int], tmp_path: Path) -> None:
    net = Net(shape, frac=4, seed=9)
    x = net.conv(net.x, 4, (1, 1), out_frac=3, in_ch=shape[0], relu=False)
    x = net.pool(x, op, (3, 3), out_frac=5, **attrs)
    bundle = _check(net.model(x), tmp_path)
    pool = next(ins.operands() for ins in bundle.program if ins.op in ("POOL", "AVGPOOL"))
    if op == "AveragePool":
        assert pool["cip"] == int(bool(attrs.get("count_include_pad")))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad_matches_onnxruntime(auto_pad: str, tmp_path: Path) -> None:
    """auto_pad on a strided Conv on a zero-point input, a MaxPool and two AveragePools (the padding
    not counted, then counted): the pads onnxruntime derives from the map, an odd total split with
    the odd row after (UPPER) or before (LOWER)."""
    net = Net([2, 13, 12], frac=5, dtype=TensorProto.UINT8, zero=61, seed=13)
    x = net.conv(net.x, 4, (3, 2), out_frac=3, in_ch=2, strides=[2, 1], auto_pad=auto_pad)
    x = net.pool(x, "MaxPool", (2, 3), strides=[1, 2], auto_pad=auto_pad)
    x = net.pool(x, "AveragePool", (3, 2), out_frac=3, strides=[2, 2], auto_pad=auto_pad)
    x = net.pool(x, "AveragePool", (2, 2), out_frac=3, auto_pad=auto_pad, count_include_pad=1)
    bundle = _check(net.model(x), tmp_path)
    conv = _convs(bundle)[0]
    pool = next(ins.operands() for ins in bundle.program if ins.op == "POOL")
    # Conv: 13 rows at stride 2, kernel 3 -> 7 outputs, 2 padding rows; 12 columns, kernel 2 -> 1 column.
    # MaxPool over 7 x 12: 7 rows, kernel 2 -> 1 padding row; 12 columns at stride 2, kernel 3 -> 1.
    expected = {"SAME_UPPER": ((1, 0, 1, 1), (0, 0, 1, 1)), "SAME_LOWER": ((1, 1, 1, 0), (1, 1, 0, 0)), "VALID": ((0, 0, 0, 0), (0, 0, 0, 0))}[auto_pad]
    assert ((conv["pt"], conv["pl"], conv["pb"], conv["pr"]), (pool["pt"], pool["pl"], pool["pb"], pool["pr"])) == expected
    assert conv["padv"] == (61 if auto_pad != "VALID" else 0)


def test_a_dilated_kernel_beyond_the_conv_field_is_refused_before_it_is_built(tmp_path: Path) -> None:
    net = Net([1, 8, 8], frac=5, seed=16)
    x = net.conv(net.x, 2, (3, 3), out_frac=3, in_ch=1, dilations=[2**31 - 1, 1])
    path = tmp_path / "m.onnx"
    onnx.save(net.model(x), path)
    with pytest.raises(OnnxError, match=r"^node 'conv\d+' \(Conv\): dilations \[2147483647, 1\] make the 3x3 kernel 4294967295x3 with its zero taps, beyond CONV's 31$"):
        compile_model(path)


def test_dilation_with_same_auto_pad_is_refused_as_onnxruntime_does(tmp_path: Path) -> None:
    net = Net([2, 9, 9], frac=5, seed=14)
    x = net.conv(net.x, 4, (3, 3), out_frac=3, in_ch=2, dilations=[2, 2], auto_pad="SAME_UPPER")
    path = tmp_path / "m.onnx"
    onnx.save(net.model(x), path)
    with pytest.raises(OnnxError, match=r"^node 'conv\d+' \(Conv\): dilations \[2, 2\] with auto_pad='SAME_UPPER' are not supported \(nor by onnxruntime\)$"):
        compile_model(path)


def test_ceil_mode_adds_the_window_and_drops_one_that_starts_in_the_padding(tmp_path: Path) -> None:
    # 5 rows, window 2, stride 2, one padding row below: ceil((5 + 1 - 2) / 2) + 1 = 3 windows start at
    # rows 0, 2, 4 (the one at 6 would start in the padding); 5 columns, no padding: 3 windows too.
    net = Net([2, 5, 5], frac=4, seed=10)
    x = net.conv(net.x, 3, (1, 1), out_frac=3, in_ch=2, relu=False)
    x = net.pool(x, "MaxPool", (2, 2), strides=[2, 2], pads=[0, 0, 1, 0], ceil_mode=1)
    bundle = _check(net.model(x), tmp_path)
    assert bundle.layers[-1].output_shape == [3, 3, 3]
    pool = next(ins.operands() for ins in bundle.program if ins.op == "POOL")
    assert (pool["pb"], pool["pr"]) == (1, 1)  # floor mode over one extra column: the last window's


@pytest.mark.parametrize("attrs,zero,message", [
    ({"strides": [2, 2], "count_include_pad": 1, "ceil_mode": 1}, 0, r"count_include_pad=1 with ceil_mode=1 where the last window runs past the padding"),
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}, 3, r"count_include_pad=1 on a padded input with zero point 3"),
    ({"strides": [1, 1], "dilations": [2, 2]}, 0, r"dilations \[2, 2\] are not supported on a pool"),
    ({"strides": [1, 1], "auto_pad": "SAME_UPPER", "pads": [1, 1, 1, 1]}, 0, r"pads \[1, 1, 1, 1\] given with auto_pad='SAME_UPPER' \(ONNX: one or the other\)"),
])
def test_what_is_still_out_is_refused_in_one_line(attrs: dict[str, Any], zero: int, message: str, tmp_path: Path) -> None:
    net = Net([2, 8, 8], frac=4, zero=zero, seed=11)
    x = net.pool(net.x, "AveragePool", (3, 3), out_frac=5, **attrs)
    x = net.conv(x, 3, (1, 1), out_frac=3, in_ch=2, relu=False)
    path = tmp_path / "m.onnx"
    onnx.save(net.model(x), path)
    with pytest.raises(OnnxError) as error:
        compile_model(path)
    text = str(error.value)
    assert "\n" not in text and re.match(r"node 'averagepool\d+' \(AveragePool\): ", text), text
    assert re.search(message, text), text


# --- average pools with zero points (decision 189) -------------------------------------------------

def _zero_point_average(zin: int, zout: int, fo: int, seed: int = 12) -> onnx.ModelProto:
    net = Net([2, 6, 6], frac=4, zero=zin, seed=seed)
    name = "averagepool0"
    net.nodes.append(helper.make_node("AveragePool", [net.x], [name], name=name, kernel_shape=[2, 2], strides=[2, 2]))
    x = net.qdq(name, fo, TensorProto.INT8, zout)
    return net.model(net.conv(x, 3, (1, 1), out_frac=3, in_ch=2, relu=False))


def test_an_average_pool_whose_zero_point_moves_exactly_matches_onnxruntime(tmp_path: Path) -> None:
    # z_out = z_in * 2**shift = 4 * 2, even: the stored words' average is the output's, exactly.
    _check(_zero_point_average(4, 8, 5), tmp_path)


@pytest.mark.parametrize("zin,zout,fo", [(3, 3, 4), (3, 0, 5), (0, 5, 5), (4, 4, 5)])
def test_an_average_pool_whose_zero_point_does_not_move_exactly_is_refused(zin: int, zout: int, fo: int, tmp_path: Path) -> None:
    """These compiled to wrong integers before decision 189 (AVGPOOL has no zero points): measured
    3428 of 5400 outputs off onnxruntime for 3 -> 0."""
    path = tmp_path / "m.onnx"
    onnx.save(_zero_point_average(zin, zout, fo), path)
    with pytest.raises(OnnxError, match=rf"^node 'averagepool0' \(AveragePool\): an average pool from \S+ to \S+: AVGPOOL has no zero points, so the output's must be the input's times 2\*\*{fo - 4} and even \(here {zin} -> {zout}\)$"):
        compile_model(path)


def test_pool_extent_is_onnxruntimes_ceil_mode_rule() -> None:
    """``pool_extent`` against onnxruntime's own output sizes on a grid of small geometries (both
    pools; onnx's shape inference disagrees with onnxruntime on some of them, the runtime is the
    reference), and the added padding stays smaller than the window."""
    from axtrain.compiler.passes.fold_qdq import pool_extent

    options = ort.SessionOptions()
    options.log_severity_level = 3
    checked = 0
    for size in range(2, 8):
        for k in (2, 3):
            for s in (1, 2, 3):
                for before in range(k):
                    for after in range(k):
                        if size + before + after < k:
                            continue
                        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[k, 1], strides=[s, 1], pads=[before, 0, after, 0], ceil_mode=1)
                        graph = helper.make_graph([node], "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, 1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
                        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
                        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
                        out = session.run(None, {"x": np.zeros((1, 1, size, 1), dtype=np.float32)})[0].shape[2]
                        extent, extra = pool_extent(size, k, s, before, after, True)
                        assert extent == out, (size, k, s, before, after)
                        reach = (extent - 1) * s + k  # the last window's end in the padded map
                        assert reach <= size + before + after + extra and (extra == 0 or reach == size + before + after + extra) and after + extra < k
                        assert pool_extent(size, k, s, before, after, False) == ((size + before + after - k) // s + 1, 0)
                        checked += 1
    assert checked > 100


def test_a_replanned_geometry_bundle_reproduces_itself_and_verifies(tmp_path: Path) -> None:
    """compiler/replan.py rebuilds the integer layers from the layer table: a zero-point padded
    dilated conv and a count_include_pad average pool come back the same (its own plan reproduces
    every file byte for byte), and a DRUM plan's recomputed golden vectors verify."""
    from axtrain.compiler.replan import Plan, bundle_plan, replan_files, write_replanned

    net = Net([2, 8, 8], frac=5, dtype=TensorProto.UINT8, zero=77, seed=15)
    x = net.conv(net.x, 4, (3, 3), out_frac=3, in_ch=2, pads=[1, 1, 1, 1], dilations=[2, 2])
    x = net.pool(x, "AveragePool", (3, 3), out_frac=4, strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    x = net.conv(x, 3, (1, 1), out_frac=3, in_ch=4, relu=False)
    _, bundle = _compile(net.model(x), tmp_path)
    assert [record.count_include_pad for record in bundle.layers] == [False, True, False]
    plan = bundle_plan(bundle)
    assert plan is not None
    files, _ = replan_files(bundle, plan)
    for name, data in files.items():
        assert data == (tmp_path / "b" / name).read_bytes(), name
    out = write_replanned(bundle, Plan(("drum:2", "drum:1"), (1.1, 1.1)), tmp_path / "plan")
    assert verify_bundle(out).ok
    assert not np.array_equal(load_bundle(out).golden_layer(2), bundle.golden_layer(2))


def test_spilled_pools_keep_count_include_pad_and_ceil_padding(tmp_path: Path) -> None:
    """Pools spilled in row bands (decision 191) on a small neuron buffer: a count_include_pad average
    pool (every band's windows over kh*kw) and a ceil-mode max pool (its extra bottom padding in the
    last band) still match onnxruntime bit for bit."""
    net = Net([3, 12, 12], frac=4, seed=17)
    x = net.conv(net.x, 4, (1, 1), out_frac=3, in_ch=3, relu=False)
    x = net.pool(x, "AveragePool", (3, 3), out_frac=4, strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)
    x = net.pool(x, "MaxPool", (2, 2), strides=[2, 2], pads=[0, 0, 1, 0], ceil_mode=1)
    bundle = _check(net.model(x), tmp_path, Architecture(neuron_buffer_bytes=1024), n=12)
    avgpools = [ins for ins in bundle.program if ins.op == "AVGPOOL"]
    assert len(avgpools) > 1 and {ins["cip"] for ins in avgpools} == {1}  # bands, each dividing by 9
