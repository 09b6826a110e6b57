"""Read an ONNX file into the compiler's graph IR (the only module that touches onnx protobufs).

Reading is defensive: a file that is not a protobuf, fails ``onnx.checker``, or points its external
data outside the model's directory is refused with one line (``OnnxError``). The result holds plain
Python values and numpy arrays, so the passes never see protobuf objects.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.errors import OnnxError
from axtrain.formats.arch import DEFAULT_ARCH, Architecture
from axtrain.limits import MAX_FILE_BYTES, MAX_MODEL_ELEMENTS, MAX_TENSOR_ELEMENTS, element_count, model_element_limits

UNSUPPORTED_ATTRIBUTE = "<tensor or graph attribute>"

# Bytes per element of the fixed-width tensor types (TensorProto.DataType): a declared shape and the
# bytes present must agree before numpy sees them. Other types are refused later by the subset.
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}



def _text(value: Any, where: str) -> str:
    """A protobuf string field as text. ONNX is proto2, which does not validate UTF-8, so a corrupt
    file can hand us bytes: refuse them in one line instead of failing later."""
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError):
        raise OnnxError(f"{where}: not valid UTF-8 text ({bytes(value)[:40]!r})") from None


def _metadata(props: Any, where: str) -> dict[str, str]:
    """``metadata_props`` as a str -> str mapping, each key and value checked to be text."""
    return {_text(p.key, f"{where}: metadata key"): _text(p.value, f"{where}: metadata {p.key!r}") for p in props}

# Ops whose tensor attribute is a constant value the normalisation passes fold (a numpy array).
TENSOR_ATTRIBUTE_OPS = ("Constant", "ConstantOfShape")


def _attribute(attr: Any, op: str = "") -> Any:
    """An attribute's value as plain Python (strings decoded); graphs and tensors become a marker,
    except the value tensor of a Constant or ConstantOfShape (a numpy array, for fold_constants)."""
    # onnx (and protobuf) load only when a model is read; bundles, replans and inspect never need it
    import onnx
    from onnx import numpy_helper

    if attr.type == onnx.AttributeProto.TENSOR and op in TENSOR_ATTRIBUTE_OPS:
        try:
            count = element_count(attr.t.dims, f"{op} value '{attr.name}'", OnnxError)
            if count > MAX_MODEL_ELEMENTS:
                raise OnnxError(f"{op} value: {count} elements, more than the limit of {MAX_MODEL_ELEMENTS}")
            return numpy_helper.to_array(attr.t)
        except (ValueError, TypeError, KeyError):
            return UNSUPPORTED_ATTRIBUTE

    plain = {onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT, onnx.AttributeProto.STRING,
             onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRINGS}
    if attr.type not in plain:
        return UNSUPPORTED_ATTRIBUTE
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


_RAISE_HINT = " (axtrain compile --max-elements raises the limit)"


def _check_declared_sizes(model: Any, source: Path, max_elements: int | None = None) -> None:
    """Every initializer's declared shape within the limits (axtrain/limits.py; ``max_elements``
    raises both, see :func:`axtrain.limits.model_element_limits`), and its inline bytes equal to
    what the shape needs, before anything is converted or loaded."""
    per_tensor, in_all = (MAX_TENSOR_ELEMENTS, MAX_MODEL_ELEMENTS) if max_elements is None else model_element_limits(max_elements, OnnxError)
    total = 0
    for tensor in model.graph.initializer:
        what = f"{source}: initializer '{tensor.name}'"
        try:
            count = element_count(tensor.dims, what, OnnxError, per_tensor)
        except OnnxError as exc:
            raise OnnxError(f"{exc}{_RAISE_HINT if max_elements is None else ''}") from None
        total += count
        if total > in_all:
            raise OnnxError(f"{source}: the initializers declare more than {in_all} elements in all{_RAISE_HINT if max_elements is None else ''}")
        item = _ITEM_BYTES.get(tensor.data_type)
        if item is not None and tensor.HasField("raw_data") and len(tensor.raw_data) != count * item:
            raise OnnxError(f"{what}: holds {len(tensor.raw_data)} bytes of data, its shape {list(tensor.dims)} needs {count * item}")


def _external_int(info: dict[str, str], key: str, what: str) -> int | None:
    if key not in info:
        return None
    try:
        value = int(info[key])
    except ValueError:
        raise OnnxError(f"{what}: external data {key} {info[key]!r} is not an integer") from None
    if value < 0:
        raise OnnxError(f"{what}: external data {key} {value} is negative")
    return value


def _load_external_data(model: Any, base: Path, source: Path) -> None:
    """Load external tensors, refusing any location that escapes the model's directory (``../``,
    absolute paths, symlinks that resolve outside it) and any offset/length that does not fit the
    file or the tensor's declared shape, before reading a byte."""
    # onnx (and protobuf) load only when a model is read; bundles, replans and inspect never need it
    import onnx
    from onnx import external_data_helper

    root = base.resolve()
    external = [t for t in model.graph.initializer if external_data_helper.uses_external_data(t)]
    for tensor in external:
        what = f"{source}: initializer '{tensor.name}'"
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise OnnxError(f"{what} has external data at {location!r}, outside the model's directory")
        if not target.is_file():
            raise OnnxError(f"{what} needs external data file {location!r}, which is missing")
        if (root / location).is_symlink():
            # onnx itself refuses to open one; say so by name instead of failing inside onnx.
            raise OnnxError(f"{what}: external data location {location!r} is a symbolic link, which is not followed")
        size = target.stat().st_size
        if size > MAX_FILE_BYTES:
            raise OnnxError(f"{what}: external data file {location!r} is {size} bytes, more than the limit of {MAX_FILE_BYTES}")
        offset = _external_int(info, "offset", what) or 0
        length = _external_int(info, "length", what)
        available = size - offset
        if available < 0 or (length is not None and length > available):
            raise OnnxError(f"{what}: external data [{offset}, {offset + (length or 0)}) lies beyond the end of {location!r} ({size} bytes)")
        item = _ITEM_BYTES.get(tensor.data_type)
        needed = math.prod(tensor.dims) * item if item is not None else None
        if needed is not None and needed != (length if length is not None else available):
            raise OnnxError(f"{what}: external data holds {length if length is not None else available} bytes, its shape {list(tensor.dims)} needs {needed}")
    if external:
        try:
            external_data_helper.load_external_data_for_model(model, str(root))
        except (OSError, ValueError, OverflowError, onnx.checker.ValidationError) as exc:
            raise OnnxError(f"{source}: cannot read external data: {' '.join(str(exc).split())[:200]}") from None


def read_model(path: str | Path, max_elements: int | None = None) -> tuple[Any, bytes]:
    """Parse and check an ONNX file; returns the ModelProto and the file's bytes. ``max_elements``:
    raise the initializer size limits (None: the defaults of axtrain/limits.py)."""
    # onnx (and protobuf) load only when a model is read; bundles, replans and inspect never need it
    import onnx
    from google.protobuf.message import DecodeError

    source = Path(path)
    try:
        size = source.stat().st_size
        if size > MAX_FILE_BYTES:
            raise OnnxError(f"{source}: {size} bytes, more than the limit of {MAX_FILE_BYTES} for an ONNX file")
        data = source.read_bytes()
    except OSError as exc:
        raise OnnxError(f"cannot read {source}: {exc.strerror or exc}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OnnxError(f"{source}: not a valid ONNX protobuf ({exc})") from None
    if not model.HasField("graph"):
        raise OnnxError(f"{source}: not an ONNX model (no graph; a malformed or truncated file?)")
    _check_declared_sizes(model, source, max_elements)
    _load_external_data(model, source.parent, source)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxError(f"{source}: fails onnx.checker: {first}") from None
    return model, data


def _dims(value: Any) -> tuple[int | str | None, ...] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(_text(dim.dim_param, f"value '{value.name}': a dimension name"))
        else:
            dims.append(None)
    return tuple(dims)


def _inferred_shapes(model: Any) -> dict[str, tuple[int | str | None, ...]]:
    """Shapes of the graph's tensors from ONNX shape inference (the normalisation passes read them to
    recognise a flatten written as a Reshape). A graph shape inference cannot handle keeps the
    shapes it declares; the passes then refuse what they cannot prove."""
    import onnx  # loads only when a model is read, as the other readers here


    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is a help, not a check (onnx.checker ran already)
        inferred = model
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = _dims(value)
        if dims is not None:
            shapes[_text(value.name, "a value name")] = dims
    return shapes


def graph_from_model(model: Any) -> Graph:
    """Convert a checked ModelProto into the plain :class:`Graph`."""
    # onnx (and protobuf) load only when a model is read; bundles, replans and inspect never need it
    import onnx
    from onnx import numpy_helper

    initializers: dict[str, np.ndarray] = {}
    for tensor in model.graph.initializer:
        try:
            initializers[tensor.name] = numpy_helper.to_array(tensor)
        except (ValueError, TypeError, KeyError) as exc:
            raise OnnxError(f"initializer '{tensor.name}': unreadable ({exc})") from None

    def type_name(elem_type: int) -> str:
        try:
            return str(onnx.TensorProto.DataType.Name(elem_type)).lower()
        except ValueError:
            return f"type{elem_type}"

    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue  # IR < 4 lists initializers as inputs too
        tensor_type = value.type.tensor_type
        dims: list[int | str | None] = []
        if tensor_type.HasField("shape"):
            for dim in tensor_type.shape.dim:
                if dim.HasField("dim_value"):
                    dims.append(int(dim.dim_value))
                elif dim.HasField("dim_param"):
                    dims.append(dim.dim_param)
                else:
                    dims.append(None)
        else:
            dims = [None]
        inputs.append((value.name, type_name(tensor_type.elem_type), tuple(dims)))
    outputs = tuple((value.name, type_name(value.type.tensor_type.elem_type)) for value in model.graph.output)
    nodes = []
    for index, proto in enumerate(model.graph.node):
        nodes.append(
            Node(
                index=index,
                name=_text(proto.name, f"node {index}'s name"),
                op=_text(proto.op_type, f"node {index}'s op type"),
                domain=_text(proto.domain, f"node {index}'s domain"),
                inputs=tuple(_text(name, f"node {index}'s inputs") for name in proto.input),
                outputs=tuple(_text(name, f"node {index}'s outputs") for name in proto.output),
                attrs={attr.name: _attribute(attr, proto.op_type) for attr in proto.attribute},
                metadata=_metadata(proto.metadata_props, f"node {index} ({_text(proto.name, 'a node name')})"),
            )
        )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return Graph(
        value_shapes=_inferred_shapes(model),
        nodes=tuple(nodes),
        initializers=initializers,
        inputs=tuple(inputs),
        outputs=outputs,
        metadata=_metadata(model.metadata_props, "the model"),
        opset=opset,
    )


def import_onnx(path: str | Path, arch: Architecture = DEFAULT_ARCH, max_elements: int | None = None) -> CompilerIR:
    """ONNX file -> the compiler IR at its first stage (graph only)."""
    source = Path(path)
    model, data = read_model(source, max_elements)
    return CompilerIR(
        source_name=source.name,
        source_sha256=hashlib.sha256(data).hexdigest(),
        arch=arch,
        graph=graph_from_model(model),
    )
