"""Mutations of valid artifacts, driven by hypothesis draws.

Every mutator takes ``draw`` (``data.draw`` of ``st.data()``) and returns the mutated value plus a
short description of what it did, so that a failing case can be reproduced by reading its line.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from hypothesis import strategies as st

from axtrain.formats import onnx_schema as schema

Draw = Callable[[st.SearchStrategy[Any]], Any]

# Values that break assumptions: wrong types, huge, negative, NaN, empty, deep.
DEEP = "\x00DEEP\x00"  # replaced by a 20,000-deep nested JSON list after serialisation
HUGE_INT = "\x00HUGEINT\x00"  # replaced by a 5,000-digit integer literal (past Python's str->int limit)
NASTY: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 4095, 4096, 65535, 65536,
    2**20, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**31), -(2**63), 10**30,
    0.0, -0.0, 0.5, -0.5, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"),
    "", "0", "1", "-1", "nan", "x", "s8.4", "s99.-5", "u8.0", "drum:2", "drum:99", "exact", "K9", "../../etc/passwd",
    "/etc/passwd", "é\u202e\x00", "a" * 2000, [], [0], [1, 2, 3], [-1, -1], [2**40, 2**40], {}, {"a": 1}, [[[]]],
    DEEP, HUGE_INT,
)


def _expand_markers(text: str) -> str:
    # json.dumps would recurse (or refuse) on these, so they are spliced in as text.
    text = text.replace(json.dumps(DEEP), "[" * 3000 + "]" * 3000)
    return text.replace(json.dumps(HUGE_INT), "9" * 5000)


def json_text(obj: Any) -> str:
    """Serialise a mutated JSON tree (NaN and Infinity allowed, markers expanded)."""
    return _expand_markers(json.dumps(obj, allow_nan=True))


def nasty(draw: Draw) -> Any:
    """One value from the nasty list, or a random integer/float/string."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.integers(-(2**70), 2**70))
    if kind == 1:
        return draw(st.floats(allow_nan=True, allow_infinity=True))
    if kind == 2:
        return draw(st.text(max_size=12))
    return copy.deepcopy(draw(st.sampled_from(NASTY)))  # a copy: later edits must not change NASTY


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON tree (the root is ``()``)."""
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for index, value in enumerate(tree[:64]):  # long lists: their first entries are enough
            out += _paths(value, prefix + (index,))
    return out


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def mutate_tree(draw: Draw, tree: Any, rounds: int | None = None) -> tuple[Any, str]:
    """Delete, replace, tweak or add values anywhere in a JSON tree (1..3 edits)."""
    tree = copy.deepcopy(tree)
    notes = []
    for _ in range(rounds if rounds is not None else draw(st.integers(1, 3))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "tweak", "add", "wrap"]))
        if not path:
            if action in ("replace", "wrap"):
                tree = nasty(draw) if action == "replace" else [tree]
                notes.append(f"root:{action}")
                continue
            action = "add"
        parent = _get(tree, path[:-1]) if path else None
        key = path[-1] if path else None
        value = _get(tree, path)
        if action == "delete" and path:
            del parent[key]
        elif action == "tweak" and isinstance(value, (int, float)) and not isinstance(value, bool):
            op = draw(st.sampled_from(["+1", "-1", "neg", "x2", "x1000", "str", "float"]))
            value = {"+1": lambda v: v + 1, "-1": lambda v: v - 1, "neg": lambda v: -v, "x2": lambda v: v * 2,
                     "x1000": lambda v: v * 1000, "str": str, "float": lambda v: float(v) + 0.5}[op](value)
            parent[key] = value
            action = f"tweak{op}"
        elif action == "add":
            target = value if isinstance(value, (dict, list)) else parent
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "files", "format", "shape", "dram", "count", "op"]))] = nasty(draw)
            elif isinstance(target, list):
                target.append(nasty(draw))
        elif action == "wrap" and path:
            parent[key] = [value]
        elif path:
            parent[key] = nasty(draw)
        notes.append(f"{'/'.join(map(str, path)) or 'root'}:{action}")
    return tree, ",".join(notes)


def mutate_bytes(draw: Draw, data: bytes) -> tuple[bytes, str]:
    """Byte-level damage: flips, overwrites, truncation, insertion, deletion, duplication."""
    buf = bytearray(data)
    action = draw(st.sampled_from(["flip", "flip", "set", "truncate", "insert", "delete", "duplicate", "empty", "append"]))
    n = len(buf)
    pos = draw(st.integers(0, max(n - 1, 0)))
    if action == "flip" and n:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, n - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
    elif action == "set" and n:
        value = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        length = draw(st.integers(1, 16))
        buf[pos : pos + length] = bytes([value]) * len(buf[pos : pos + length])
    elif action == "truncate":
        del buf[pos:]
    elif action == "insert":
        buf[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    elif action == "delete":
        del buf[pos : pos + draw(st.integers(1, 64))]
    elif action == "duplicate" and n:
        chunk = bytes(buf[pos : pos + draw(st.integers(1, 256))])
        buf[pos:pos] = chunk
    elif action == "empty":
        buf = bytearray()
    elif action == "append":
        buf += draw(st.binary(min_size=1, max_size=64))
    return bytes(buf), f"bytes:{action}@{pos}"


# ---------------------------------------------------------------------------------------------
# ONNX protobuf edits
# ---------------------------------------------------------------------------------------------

OPS = ["Gemm", "Conv", "MatMul", "Add", "Relu", "MaxPool", "Flatten", "QuantizeLinear", "DequantizeLinear", "Clip",
       "Identity", "Softmax", "Reshape", "Loop", "If", "Custom", "", "gemm"]
HUGE_DIMS = [0, -1, 1, 3, 2**20, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1]


def _initializer(draw: Draw, model: onnx.ModelProto) -> onnx.TensorProto | None:
    inits = list(model.graph.initializer)
    return draw(st.sampled_from(inits)) if inits else None


def _node(draw: Draw, model: onnx.ModelProto) -> onnx.NodeProto | None:
    nodes = list(model.graph.node)
    return draw(st.sampled_from(nodes)) if nodes else None


def mutate_onnx(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> tuple[onnx.ModelProto, str]:
    """One or two protobuf-level edits of a ModelProto (a copy). ``outside`` is a directory outside
    ``model_dir`` holding a file ``secret.bin`` that external data may try to reach."""
    model = copy.deepcopy(model)
    notes = []
    for _ in range(draw(st.integers(1, 2))):
        edit = draw(st.sampled_from(EDITS))
        notes.append(edit.__name__.removeprefix("_e_") + ":" + (edit(draw, model, model_dir, outside) or ""))
    return model, ";".join(notes)


def _e_dims(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    t = _initializer(draw, model)
    if t is None:
        return "none"
    action = draw(st.sampled_from(["set", "add", "drop", "many"]))
    if action == "set" and len(t.dims):
        i = draw(st.integers(0, len(t.dims) - 1))
        t.dims[i] = draw(st.sampled_from(HUGE_DIMS))
    elif action == "add":
        t.dims.append(draw(st.sampled_from(HUGE_DIMS)))
    elif action == "drop" and len(t.dims):
        del t.dims[-1]
    elif action == "many":
        t.dims[:] = [draw(st.sampled_from([2**16, 2**20, 2**31 - 1]))] * draw(st.integers(2, 40))
    return f"{t.name}:{action}:{list(t.dims)[:6]}"


def _e_dtype(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    t = _initializer(draw, model)
    if t is None:
        return "none"
    t.data_type = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 21, 22, 23, 25, 99, -1]))
    return f"{t.name}:{t.data_type}"


def _e_data(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    t = _initializer(draw, model)
    if t is None:
        return "none"
    if t.HasField("raw_data"):
        raw, note = mutate_bytes(draw, t.raw_data)
        t.raw_data = raw
        return f"{t.name}:raw:{note}"
    field = draw(st.sampled_from(["float_data", "int32_data", "int64_data"]))
    getattr(t, field).extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5)))
    return f"{t.name}:{field}"


def _e_scale(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    scalars = [t for t in model.graph.initializer if not t.dims and t.data_type == onnx.TensorProto.FLOAT]
    if not scalars:
        return "none"
    t = draw(st.sampled_from(scalars))
    value = draw(st.sampled_from([float("nan"), float("inf"), 0.0, -0.25, 3.0, 2.0**-200, 2.0**100, 1e-45, 0.1, 2.0**-140]))
    t.raw_data = np.array(value, dtype=np.float32).tobytes()
    return f"{t.name}={value}"


def _e_zero_point(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    zeros = [t for t in model.graph.initializer if not t.dims and t.data_type != onnx.TensorProto.FLOAT]
    if not zeros:
        return "none"
    t = draw(st.sampled_from(zeros))
    dtype = draw(st.sampled_from([2, 3, 5, 6, 7, 1]))
    dims = draw(st.sampled_from([[], [1], [2]]))
    value = draw(st.sampled_from([0, 1, -1, 127]))
    new = onnx.helper.make_tensor(t.name, dtype, dims, [value] * (2 if dims == [2] else 1))
    t.CopyFrom(new)
    return f"{t.name}:{t.data_type}:{list(t.dims)}"


def _e_op(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    node = _node(draw, model)
    if node is None:
        return "none"
    node.op_type = draw(st.sampled_from(OPS))
    if draw(st.booleans()):
        node.domain = draw(st.sampled_from(["", "ai.onnx", "com.microsoft", "ai.onnx.ml"]))
    return f"{node.name}->{node.op_type}"


def _e_attr(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    node = _node(draw, model)
    if node is None:
        return "none"
    names = ["kernel_shape", "strides", "pads", "dilations", "group", "transB", "transA", "alpha", "axis", "saturate",
             "auto_pad", "ceil_mode", "output_dtype", "block_size", "bogus"]
    name = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["int", "ints", "float", "string", "tensor", "delete"]))
    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            break
    if kind == "delete":
        return f"{node.name}.{name}:delete"
    ints = [2**31 - 1, 2**62, -1, 0, 1, 2, 3, 9, 100000]
    if kind == "int":
        value: Any = draw(st.sampled_from(ints))
    elif kind == "ints":
        value = draw(st.lists(st.sampled_from(ints), max_size=5))
    elif kind == "float":
        value = draw(st.sampled_from([float("nan"), 0.0, 1.0, 2.5, -1.0]))
    elif kind == "string":
        value = draw(st.sampled_from(["SAME_UPPER", "VALID", "NOTSET", "", "x" * 100]))
    else:
        value = onnx.helper.make_tensor("t", onnx.TensorProto.INT64, [1], [1])
    if kind == "ints" and not value:
        node.attribute.append(onnx.helper.make_attribute(name, [], attr_type=onnx.AttributeProto.INTS))
    else:
        node.attribute.append(onnx.helper.make_attribute(name, value))
    return f"{node.name}.{name}={kind}"


def _e_wiring(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    node = _node(draw, model)
    if node is None:
        return "none"
    action = draw(st.sampled_from(["drop_input", "rename_input", "rename_output", "delete_node", "duplicate_node", "swap_inputs", "self_loop"]))
    nodes = model.graph.node
    if action == "drop_input" and len(node.input):
        del node.input[draw(st.integers(0, len(node.input) - 1))]
    elif action == "rename_input" and len(node.input):
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(["", "nowhere", "input", "output"]))
    elif action == "rename_output" and len(node.output):
        node.output[0] = draw(st.sampled_from(["", "x", "input", "output"]))
    elif action == "delete_node":
        index = list(nodes).index(node)
        del nodes[index]
    elif action == "duplicate_node":
        nodes.append(copy.deepcopy(node))
    elif action == "swap_inputs" and len(node.input) > 1:
        node.input[0], node.input[1] = node.input[1], node.input[0]
    elif action == "self_loop" and len(node.input) and len(node.output):
        node.input[0] = node.output[0]
    return f"{node.name}:{action}"


def _e_io(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    value = draw(st.sampled_from(list(model.graph.input) + list(model.graph.output)))
    action = draw(st.sampled_from(["dim", "dim_param", "rank", "elem", "noshape", "extra_input"]))
    dims = value.type.tensor_type.shape.dim
    if action == "dim" and len(dims):
        dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.sampled_from(HUGE_DIMS))
    elif action == "dim_param" and len(dims):
        dims[draw(st.integers(0, len(dims) - 1))].dim_param = "d"
    elif action == "rank":
        dims.add().dim_value = draw(st.sampled_from([1, 2, 2**31]))
    elif action == "elem":
        value.type.tensor_type.elem_type = draw(st.sampled_from([0, 2, 3, 7, 10, 11, 16]))
    elif action == "noshape":
        value.type.tensor_type.ClearField("shape")
    elif action == "extra_input":
        model.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1]))
    return f"{value.name}:{action}"


# The schema's keys whose values the readers parse (axtrain/formats/onnx_schema.py): a misspelt key
# would only exercise "unknown keys are ignored" (the voltage's was "axtrain.sram_voltage" once).
METADATA_KEYS = [
    schema.KEY_SCHEMA, schema.KEY_MULTIPLIER, schema.KEY_SRAM_VOLTAGE, schema.KEY_INPUT_FORMAT, schema.KEY_OUTPUT_FORMAT,
    schema.KEY_WEIGHT_FORMAT, schema.KEY_BIAS_FORMAT, schema.KEY_LAYER, schema.KEY_APP, schema.KEY_SEED, schema.KEY_METHOD,
]


def _e_metadata(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    keys = METADATA_KEYS
    values = ["", "2", "1", "nan", "inf", "-1", "0.0", "1e309", "drum:0", "drum:17", "drum:2", "[\"exact\"]", "[1,2", "[\"drum:2\", 3]",
              "s8.4", "s0.0", "s64.3", "s8.99999", "u8.2", "s8.-100", "x" * 5000, "\u202e", "[" * 5000]
    key, value = draw(st.sampled_from(keys)), draw(st.sampled_from(values))
    target = model if draw(st.booleans()) or not len(model.graph.node) else _node(draw, model)
    for i, prop in enumerate(target.metadata_props):
        if prop.key == key:
            del target.metadata_props[i]
            break
    target.metadata_props.add(key=key, value=value)
    return f"{key}={value[:20]!r}"


def _e_opset(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    action = draw(st.sampled_from(["version", "ir", "clear", "domain"]))
    if action == "version":
        model.opset_import[0].version = draw(st.sampled_from([1, 12, 13, 22, 99, 2**40]))
    elif action == "ir":
        model.ir_version = draw(st.sampled_from([0, 1, 3, 4, 11, 99]))
    elif action == "clear":
        del model.opset_import[:]
    else:
        model.opset_import.add(domain="com.evil", version=1)
    return action


def _e_external(draw: Draw, model: onnx.ModelProto, model_dir: Path, outside: Path) -> str:
    """Point an initializer at external data: valid, escaping (../, absolute, symlink), missing, or
    with a hostile offset/length."""
    t = _initializer(draw, model)
    if t is None:
        return "none"
    raw = t.raw_data if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).tobytes() if t.data_location == 0 else b""
    kind = draw(st.sampled_from(["valid", "dotdot", "absolute", "symlink_file", "symlink_dir", "missing", "offset", "length", "dir", "empty"]))
    location = "ext.bin"
    (model_dir / "ext.bin").write_bytes(raw)
    if kind == "dotdot":
        location = os.path.relpath(outside / "secret.bin", model_dir)
    elif kind == "absolute":
        location = str(outside / "secret.bin")
    elif kind == "symlink_file":
        location = "link.bin"
        link = model_dir / location
        if not link.exists():
            link.symlink_to(outside / "secret.bin")
    elif kind == "symlink_dir":
        link = model_dir / "linkdir"
        if not link.exists():
            link.symlink_to(outside, target_is_directory=True)
        location = "linkdir/secret.bin"
    elif kind == "missing":
        location = "nothere.bin"
    elif kind == "dir":
        (model_dir / "sub").mkdir(exist_ok=True)
        location = "sub"
    elif kind == "empty":
        location = ""
    entries = {"location": location}
    if kind == "offset":
        entries["offset"] = str(draw(st.sampled_from([-1, 2**62, 10**30, 7])))
    if kind == "length":
        entries["length"] = str(draw(st.sampled_from([-1, 2**62, 0, 1, 10**30])))
    t.ClearField("raw_data")
    for field in ("float_data", "int32_data", "int64_data"):
        t.ClearField(field)
    del t.external_data[:]
    for key, value in entries.items():
        t.external_data.add(key=key, value=value)
    t.data_location = onnx.TensorProto.EXTERNAL
    return f"{t.name}:{kind}:{location}"


EDITS = [_e_dims, _e_dtype, _e_data, _e_scale, _e_zero_point, _e_op, _e_attr, _e_wiring, _e_io, _e_metadata, _e_opset, _e_external,
         _e_dims, _e_scale, _e_attr, _e_external]


# ---------------------------------------------------------------------------------------------
# .npy edits (golden vectors)
# ---------------------------------------------------------------------------------------------


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def mutate_npy(draw: Draw, data: bytes) -> tuple[bytes, str]:
    """Replace a .npy file with a plausible-looking but wrong one (or damage its bytes)."""
    action = draw(st.sampled_from(["bytes", "pickle", "dtype", "shape", "scalar", "header_lie", "fortran", "empty", "nan"]))
    original = np.load(io.BytesIO(data), allow_pickle=False)
    if action == "bytes":
        return mutate_bytes(draw, data)
    if action == "pickle":
        obj = np.empty(2, dtype=object)
        obj[0], obj[1] = {"a": 1}, [1]
        return _npy(obj, allow_pickle=True), "npy:pickle"
    if action == "dtype":
        dtype = draw(st.sampled_from(["<f8", "<i2", "<u8", "|b1", "<c16", "<U3", "|S2", "<M8[s]"]))
        return _npy(original.astype(dtype) if dtype not in ("<M8[s]",) else np.zeros(original.shape, dtype)), f"npy:dtype:{dtype}"
    if action == "shape":
        shape = draw(st.sampled_from([(0,), (1,), (original.size,), (3, 0), (original.shape[0] + 1,) + original.shape[1:], (1, 1, 1, 1, 1)]))
        return _npy(np.zeros(shape, dtype=original.dtype)), f"npy:shape:{shape}"
    if action == "scalar":
        return _npy(np.array(1, dtype=original.dtype)), "npy:scalar"
    if action == "header_lie":
        # A header that declares far more data than the file holds.
        big = draw(st.sampled_from([(2**40,), (2**31, 2**31), (10**6, 10**6), (original.shape[0], 2**50)]))
        header = {"descr": original.dtype.str, "fortran_order": False, "shape": big}
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(out, header)
        return out.getvalue() + original.tobytes(), f"npy:header_lie:{big}"
    if action == "fortran":
        return _npy(np.asfortranarray(original.reshape(original.shape[0], -1).T)), "npy:fortran"
    if action == "nan":
        if original.dtype.kind == "f":
            bad = original.copy()
            bad.reshape(-1)[0] = np.nan
            return _npy(bad), "npy:nan"
        return _npy(original.astype(np.float64) + 0.5), "npy:float"
    return b"", "npy:empty"


def mutate_program(draw: Draw, data: bytes) -> tuple[bytes, str]:
    """Program-level damage that keeps a whole number of 16-byte words (so decoding is reached)."""
    words = [data[i : i + 16] for i in range(0, len(data), 16)]
    if not words:
        return data, "program:empty"
    action = draw(st.sampled_from(["operand_bit", "operand_bit", "operand_bit", "opcode", "drop", "swap", "duplicate", "no_end", "reserved"]))
    i = draw(st.integers(0, len(words) - 1))
    if action == "operand_bit":
        value = int.from_bytes(words[i], "little") ^ (1 << draw(st.integers(8, 80)))
        words[i] = value.to_bytes(16, "little")
    elif action == "opcode":
        words[i] = bytes([draw(st.integers(0, 255))]) + words[i][1:]
    elif action == "drop":
        del words[i]
    elif action == "swap":
        j = draw(st.integers(0, len(words) - 1))
        words[i], words[j] = words[j], words[i]
    elif action == "duplicate":
        words.insert(i, words[i])
    elif action == "no_end":
        words = words[:-1]
    elif action == "reserved":
        words[i] = words[i][:15] + b"\x80"
    return b"".join(words), f"program:{action}@{i}"
