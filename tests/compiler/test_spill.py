"""Maps kept in the neuron buffer and spilled adds and average pools (compiler/passes/allocate.py,
emit.py; docs/compiler.md "Activation spill and residual branches", decisions 190-192).

Small QDQ graphs (tests/compiler/mlperf_tiny.py) compiled for neuron buffers chosen so that each
path runs: a residual shortcut kept in the buffer while the layers between its fork and its Add
run, one stored to ``DRAM.A`` because it does not fit beside them, and a buffer so small that the
convs, the Add and the AveragePool run in bands. Each bundle passes ``axtrain verify`` and gives
onnxruntime's float32 outputs bit for bit (exact mode) and the interpreter's activation DRAM word
for word; the structure asserted is the one the buffer size implies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import mlperf_tiny
import onnx
import pytest
from test_mlperf_tiny import _compare

from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import Bundle, load_bundle

pytest.importorskip("onnxruntime", reason="onnxruntime is the reference of this comparison")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MAP = 4 * 6 * 6  # words of one of the toy's maps (ch 4 at 6x6); its input is 2x6x6


def _nb(words: int) -> Architecture:
    return Architecture(neuron_buffer_bytes=2 * words)


def _toy(tmp_path: Path, arch: Architecture, **kwargs: Any) -> tuple[Path, Bundle]:
    path = tmp_path / "toy.onnx"
    onnx.save(mlperf_tiny.residual_toy(**kwargs), path)
    return path, load_bundle(compile_to_bundle(path, tmp_path / "toy.bundle", arch=arch, golden_count=4))


def _transfers(bundle: Bundle, layer: int) -> list[str]:
    first, end = bundle.layers[layer].program
    return [ins.op for ins in bundle.program[first:end] if ins.op in ("LDN", "STN")]


def _syncs(bundle: Bundle) -> dict[int, tuple[int, int]]:
    return {ins["layer"]: (ins["nb"], ins["space"]) for ins in bundle.program if ins.op == "SYNC"}


def test_a_shortcut_that_fits_stays_in_the_neuron_buffer(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    path, bundle = _toy(tmp_path, _nb(3 * MAP + 16))
    ops = [ins.op for ins in bundle.program]
    assert ops.count("LDN") == 1 and ops.count("STN") == 1  # the network input and output only
    add = next(i for i, record in enumerate(bundle.layers) if record.op == "add")
    a, b = bundle.layers[add].sources
    add_ins = next(ins for ins in bundle.program if ins.op == "ADD")
    syncs = _syncs(bundle)
    # The ADD reads the stem's map where the stem wrote it, two layers earlier, and the second conv's.
    assert {add_ins["a"], add_ins["b"]} == {syncs[a][0], syncs[b][0]} and syncs[a][1] == syncs[b][1] == 0
    _compare(path, bundle, 24, run_cli, reference=2)


def test_a_shortcut_that_does_not_fit_goes_through_dram(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    # Two maps fit, three do not: the stem's output leaves the buffer before the second conv writes.
    path, bundle = _toy(tmp_path, _nb(2 * MAP + 32))
    add = next(i for i, record in enumerate(bundle.layers) if record.op == "add")
    assert _transfers(bundle, add - 1) == ["STN"] and _transfers(bundle, add) == ["LDN"]
    assert all(not _transfers(bundle, i) for i in range(len(bundle.layers)) if i not in (add - 1, add))
    assert all(space == 0 for _, space in _syncs(bundle).values())
    _compare(path, bundle, 24, run_cli, reference=2)


def test_adds_and_average_pools_spill_in_bands(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    # Below two maps: the convs, the add (two addends do not fit) and the average pool (its map and
    # its output do not) run in bands through DRAM.A.
    path, bundle = _toy(tmp_path, _nb(MAP + 16))
    ops = [ins.op for ins in bundle.program]
    assert ops.count("ADD") == -(-MAP // ((MAP + 16) // 2)) and ops.count("AVGPOOL") >= 2
    spilled = {bundle.layers[i].op for i, (_, space) in _syncs(bundle).items() if space == 1}
    assert {"conv", "add", "avgpool"} <= spilled
    _compare(path, bundle, 24, run_cli, reference=2)


def test_the_resnet8_twin_spills_its_adds(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    """ResNet-8's shape at width 0.25 on 16x16 (maps of 1 Ki words) with a 1.5 Ki-word buffer: the
    first stack's convs and add spill, the later stacks keep their shortcuts in the buffer."""
    path = tmp_path / "resnet8.onnx"
    onnx.save(mlperf_tiny.resnet8(width=0.25, size=16), path)
    bundle = load_bundle(compile_to_bundle(path, tmp_path / "r8.bundle", arch=_nb(1536), golden_count=4))
    adds = [i for i, record in enumerate(bundle.layers) if record.op == "add"]
    syncs = _syncs(bundle)
    assert syncs[adds[0]][1] == 1 and syncs[adds[-1]][1] == 0
    assert not _transfers(bundle, adds[-1])  # the last stack's shortcut conv output and its second conv's, both kept
    _compare(path, bundle, 12, run_cli, reference=1)


def test_a_map_that_cannot_fit_is_refused_in_one_line(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    path = tmp_path / "toy.onnx"
    onnx.save(mlperf_tiny.residual_toy(), path)
    arch = tmp_path / "arch.json"
    arch.write_text('{"neuron_buffer_bytes": 128}')  # 64 words: the stem's bands fit (2 x 3 input rows + a row of 4 x 6), the next conv's do not
    code, _, err = run_cli(["compile", path, "--out", tmp_path / "b", "--arch", arch])
    assert code == 2 and err.count("\n") == 1, err
    assert "layer 1" in err and "even one output row with its input rows does not fit the neuron buffer (64 words)" in err, err
    assert not (tmp_path / "b").exists()



def test_dense_layers_spill_in_bands_of_neurons_and_pieces_of_inputs(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    """96-300-200-10 on a 256-word buffer: the first layer keeps its 96 inputs and computes its 300
    outputs in bands of 150 (one m-block each); the second's 300 inputs do not fit, so each band of
    100 outputs accumulates over pieces of 120, 120 and 60 inputs loaded from DRAM.A (two chunks of
    60 each); the last layer fits."""
    path = tmp_path / "mlp.onnx"
    onnx.save(mlperf_tiny.mlp(sizes=(96, 300, 200, 10)), path)
    bundle = load_bundle(compile_to_bundle(path, tmp_path / "mlp.bundle", arch=_nb(256), golden_count=4))
    syncs = _syncs(bundle)
    assert [syncs[i][1] for i in range(3)] == [1, 1, 0]
    first, end = bundle.layers[1].program
    loads = [(ins["dram"], ins["count"]) for ins in bundle.program[first:end] if ins.op == "LDN"]
    base = loads[0][0]
    assert loads == [(base, 120), (base + 120, 120), (base + 240, 60)] * 2
    macs = [ins["init"] for ins in bundle.program[first:end] if ins.op == "MAC"]
    assert macs == [1, 0, 0, 0, 0] * 2  # one accumulator chain per band across its pieces
    assert _transfers(bundle, 0) == ["LDN", "STN", "STN"]
    _compare(path, bundle, 24, run_cli, reference=2)


@pytest.mark.parametrize("pool", ["global", "max"])
def test_pools_spill_over_groups_of_channels(pool: str, tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    """A 16x8x8 map on a 256-word buffer: not even one output row of all 16 channels fits beside its
    input rows (GlobalAveragePool's row is the whole map; a 2x2 max pool's two rows and its output row: 320 words), so the pool runs
    over groups of channels (3 channels at a time for the global pool), each group in row bands."""
    path = tmp_path / "m.onnx"
    onnx.save(mlperf_tiny.pooled_toy(pool), path)
    bundle = load_bundle(compile_to_bundle(path, tmp_path / "m.bundle", arch=_nb(256), golden_count=4))
    op = "AVGPOOL" if pool == "global" else "POOL"
    channels = [ins["c"] for ins in bundle.program if ins.op == op]
    if pool == "global":  # 3 x 64 + 3 words fit 256, 4 x 64 do not: 16 channels in 6 groups, evened out
        assert channels == [3, 3, 3, 3, 3, 1]
    else:  # up to 12 channels of two input rows and one output row fit (240 words): 2 groups of 8, 4 row bands each
        assert channels == [8] * 8
    assert _syncs(bundle)[1][1] == 1
    _compare(path, bundle, 24, run_cli, reference=2)
