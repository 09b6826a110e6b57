"""Declared sizes are checked against axtrain/limits.py before anything is allocated: ONNX
initializer dims and the network input, .npy headers, a bundle's architecture (interpreter state).

The ONNX and .npy cases run in a subprocess under ``RLIMIT_AS`` (the loaded toolchain + 256 MiB):
a reader that trusted the declared size would die with MemoryError instead of the one-line error.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_graphs import build_model, mlp_specs

from axtrain import limits
from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.errors import BundleError, OnnxError
from axtrain.formats import bundle as fmt
from axtrain.formats.arch import DEFAULT_ARCH
from axtrain.formats.isa import parse_assembly
from axtrain.runtime.interpreter import run_program


def _model() -> onnx.ModelProto:
    specs = mlp_specs(np.random.default_rng(6), [10, 6, 3])
    specs[0].fo, specs[1].fo = -2, -3
    return build_model(specs, ["N", 10])


def run_capped(code: str, extra_mb: int = 256) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter whose address space is capped at its size after imports + extra_mb."""
    prelude = textwrap.dedent(f"""
        import resource
        import numpy, onnx
        import axtrain.compiler.pipeline, axtrain.formats.bundle
        size = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))
        resource.setrlimit(resource.RLIMIT_AS, (size + {extra_mb} * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


DIMS_CASES = [
    ([2**40], "declares 1099511627776 elements"),
    ([2**31, 2**31], "declares 4611686018427387904 elements"),
    ([2**62, 2**62, 2**62], "declares"),  # overflows int64: Python integers, not wrapped
    ([-1, 10], "negative dimension"),
    ([1] * 9, "rank 9 exceeds"),
    ([6, 11], "holds 60 bytes of data, its shape [6, 11] needs 66"),
]


def test_initializer_dims_checked_before_allocation(tmp_path: Path) -> None:
    paths = []
    for number, (dims, _) in enumerate(DIMS_CASES):
        model = _model()
        w0 = next(t for t in model.graph.initializer if t.name == "w0")
        w0.dims[:] = dims
        paths.append(str(tmp_path / f"m{number}.onnx"))
        onnx.save(model, paths[-1])
    # One capped process for all cases (a process start costs seconds on this machine).
    done = run_capped(f"""
        from axtrain.compiler.pipeline import compile_model
        from axtrain.errors import OnnxError
        for path in {paths!r}:
            try:
                compile_model(path)
                print("accepted")
            except OnnxError as exc:
                print("OnnxError:", exc)
    """)
    assert done.returncode == 0, done.stderr[-1500:]
    lines = done.stdout.splitlines()
    assert len(lines) == len(DIMS_CASES)
    for line, (dims, message) in zip(lines, DIMS_CASES, strict=True):
        assert line.startswith("OnnxError:") and "initializer 'w0'" in line and message in line, (dims, line)


def test_model_total_elements_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import axtrain.compiler.onnx_import as onnx_import

    monkeypatch.setattr(onnx_import, "MAX_MODEL_ELEMENTS", 70)  # w0 has 60, w1 18
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    with pytest.raises(OnnxError, match="the initializers declare more than 70 elements in all"):
        onnx_import.import_onnx(path)


def test_network_input_size_limited(tmp_path: Path) -> None:
    model = _model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = limits.MAX_TENSOR_ELEMENTS + 1
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    from axtrain.compiler.pipeline import compile_model

    with pytest.raises(OnnxError, match=r"input 'input' \(per sample\): shape .* more than the limit"):
        compile_model(path)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    model = tmp_path / "m.onnx"
    onnx.save(_model(), model)
    return compile_to_bundle(model, tmp_path / "b")


def _rewrite(bundle: Path, name: str, data: bytes) -> None:
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["files"][name] = fmt.sha256_bytes(data)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))


def test_npy_header_lie_refused_before_allocation(bundle: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    _rewrite(bundle, fmt.GOLDEN_INPUTS, header.getvalue() + bytes(64))
    done = run_capped(f"""
        from axtrain.runtime.verify import verify_bundle
        from axtrain.errors import BundleError
        try:
            verify_bundle(__import__("pathlib").Path({str(bundle)!r}))
        except BundleError as exc:
            print("BundleError:", exc)
    """)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "BundleError:" in done.stdout and "golden/inputs.npy" in done.stdout and "more than the limit" in done.stdout, done.stdout


@pytest.mark.parametrize("array, message", [
    (np.array([{"a": 1}, None], dtype=object), "only numeric arrays are read"),
    (np.array(["ab", "c"]), "only numeric arrays are read"),
])
def test_npy_objects_and_strings_refused(array: np.ndarray, message: str, bundle: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    _rewrite(bundle, fmt.GOLDEN_INPUTS, buffer.getvalue())
    with pytest.raises(BundleError, match=message):
        fmt.load_bundle(bundle).golden_inputs()


def test_npy_reader_round_trips_c_and_fortran(tmp_path: Path) -> None:
    for array in (np.arange(12, dtype=np.int64).reshape(3, 4), np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)), np.array(5, dtype=np.int16)):
        path = tmp_path / "a.npy"
        np.save(path, array, allow_pickle=False)
        loaded = fmt.read_npy(path)
        assert loaded.dtype == array.dtype and loaded.shape == array.shape
        np.testing.assert_array_equal(loaded, array)


def test_hostile_architecture_refused_by_the_interpreter(bundle: Path) -> None:
    # Legal for the ISA's field widths, but 64*63 PEs x 65535 local words x 8 images ~ 17 GB of state.
    arch = dict(DEFAULT_ARCH.to_json(), pe_rows=64, pe_cols=63, pe_weight_memory_bytes=131070, pe_neuron_memory_bytes=131070,
                neuron_buffer_bytes=2 * (2**20 - 1), weight_buffer_bytes=2 * (2**20 - 1))
    _rewrite(bundle, fmt.ARCH, json.dumps(arch).encode())
    program = (bundle / fmt.PROGRAM_BIN).read_bytes()
    from axtrain.formats.isa import Instruction, decode_program, encode_program, listing

    # Make one DISTW use the whole local memory so the program really needs it.
    words = decode_program(program)
    index = next(i for i, ins in enumerate(words) if ins.op == "DISTW")
    o = words[index].operands()
    words[index] = Instruction.of("DISTW", **dict(o, k=65535))
    _rewrite(bundle, fmt.PROGRAM_BIN, encode_program(words))
    _rewrite(bundle, fmt.PROGRAM_ASM, listing(words).encode())  # the listing must match the binary
    _rewrite(bundle, fmt.PROGRAM_HEX, fmt.program_hex(encode_program(words)).encode())  # and the hex image
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    files = {name: (bundle / name).read_bytes() for name in (fmt.PROGRAM_BIN, fmt.WEIGHTS_BIN, fmt.BIAS_BIN, fmt.LAYERS)}
    from axtrain.compiler.package import content_hash_of_files
    from axtrain.formats.arch import arch_from_dict

    manifest["content_sha256"] = content_hash_of_files(files, manifest, arch_from_dict(arch))  # a consistent forgery
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    from axtrain.runtime.interpreter import run_bundle

    loaded = fmt.load_bundle(bundle)
    with pytest.raises(BundleError, match=r"reference interpreter would need \d+ MiB of machine state for one image"):
        run_bundle(loaded, loaded.golden_inputs())


def test_batching_keeps_results_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    import axtrain.runtime.interpreter as interpreter

    program = parse_assembly(textwrap.dedent("""
        LDN nb=0 dram=0 count=4
        LDW wb=0 dram=0 rows=1 cols=4 stride=4
        LDB bb=0 dram=0 count=1
        CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        DISTW wb=0 stride=4 m=1 p=1 k=4
        DISTN nb=0 p0=0 m=1 p=1 k0=0 k=4
        MAC m=1 p=1 k=4 bb=0 mt=0 init=1
        REQ nb=8 ostride=1 m=1 p=1 shift=2 bits=8
        SYNC layer=0 nb=8 count=1 space=0
        STN dram=4 nb=8 count=1
        END
    """))
    rng = np.random.default_rng(0)
    dram = np.zeros((37, 5), dtype=np.int64)
    dram[:, :4] = rng.integers(-100, 100, (37, 4))
    whole = run_program(program, DEFAULT_ARCH, np.array([3, -2, 5, 1]), np.array([7]), dram)
    arch = DEFAULT_ARCH
    per_image = arch.neuron_buffer_words + arch.pe_count * 5 + 5
    shared = arch.weight_buffer_words + 2 * arch.bias_buffer_words + arch.pe_count * 4 + 5
    monkeypatch.setattr(interpreter, "MAX_INTERPRETER_STATE_BYTES", 8 * (shared + 5 * per_image))  # 5 images a batch
    assert interpreter.batch_size(arch, 4, 5, 5) == 5
    sliced = run_program(program, DEFAULT_ARCH, np.array([3, -2, 5, 1]), np.array([7]), dram)
    np.testing.assert_array_equal(sliced.dram_a, whole.dram_a)
    np.testing.assert_array_equal(sliced.layer_outputs[0], whole.layer_outputs[0])
    # REQ: round half to even of acc / 2**2, saturated to 8 bits (np.round rounds half to even too).
    expected = np.clip(np.round((dram[:, :4] @ np.array([3, -2, 5, 1]) + 7) / 4), -128, 127).astype(np.int64)
    np.testing.assert_array_equal(whole.layer_outputs[0][:, 0], expected)
