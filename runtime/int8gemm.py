"""Exact 8-bit GEMMs on onnxruntime's integer kernels, for the fast executor's large products.

The fast executor (:mod:`axtrain.runtime.execute`) carries integers in float32 and multiplies them
with numpy's float32 GEMM, exact below ``2**24``. Most bundles multiply 8-bit weights by 8-bit
activations, and for those onnxruntime's ``MatMulInteger`` (uint8 x int8 -> int32, MLAS's VNNI /
AVX2 / NEON kernels) computes the same integers 2-5x faster on one core (deep products gain most). Both are exact, so the
simulator's results do not change by a bit; :mod:`tests.runtime.test_int8gemm` compares them.

Why it is exact:

* integer products summed in int32: no rounding anywhere; the callers take this path only where
  ``2 * k * 127 * 128`` and every partial sum stay below ``2**31``, so the int32 sums cannot wrap (the
  product comes back as float32 below ``2**24``, else as float64, exact either way);
* the weights are the integers themselves (int8: every weight in ``[-128, 127]``);
* the activations enter as ``x + z`` in uint8 with ``z`` the ``a_zero_point`` onnxruntime subtracts
  exactly, and ``x + z`` is kept in ``[0, 127]``: AVX2's non-VNNI kernel adds pairs of uint8 x int8
  products in int16 with saturation (``vpmaddubsw``), and ``2 * 127 * 128 < 2**15`` keeps every pair
  inside int16 on any x86 kernel. A batch whose activations span more than 127 takes the float path.

When: only where it pays. onnxruntime's import (~0.03 s) and session (a few ms) come once per
process, and a product gains ~0.8 ms per 100 M multiply-adds, so the executor takes this path only
for a simulation with at least :data:`MIN_TOTAL_MACS` eligible multiply-adds, and per GEMM from
:data:`MIN_MACS` (smaller ones lose to the conversions). ``AXTRAIN_INT8_GEMM=0`` in the environment
turns it off. Not in a forked child (runtime/beside.py: no onnxruntime there): the float path runs.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any, Callable

import numpy as np

#: The environment variable that turns the path off (``0``); anything else leaves it on.
ENV = "AXTRAIN_INT8_GEMM"
#: Eligible multiply-adds of one simulation from which the path is taken (its import pays back).
MIN_TOTAL_MACS = 4e9
#: Multiply-adds from which one GEMM takes the path (below it the operand conversions cost more).
MIN_MACS = 1 << 22
#: The shallowest product (k) and fewest output rows (n) that gain (:func:`worth`).
MIN_DEPTH = 256
MIN_ROWS = 128
#: The largest activation value onnxruntime sees (after the zero point): see the module docstring.
MAX_ACTIVATION = 127
#: Images of one simulation from which its int8 weights are packed once (:class:`Packed`): a
#: matrix's packing costs about what ~1,000 columns of products gain (measured on the 784 x 6400
#: and 4096 x 4096 GEMMs), so a margin of four.
PACK_MIN_IMAGES = 4096
#: Sums below this are exact in the int32 accumulators. The kernel's own partial sums (uint8 x int8
#: before the zero point's ``z * sum(w)`` is taken off) reach ``2 * k * 127 * 128`` at most, so the
#: callers also require that below it (:func:`depth_fits`: k <= 66,052).
INT32_EXACT = 1 << 31


def depth_fits(k: int) -> bool:
    """Whether every int32 the kernels form for a product of depth ``k`` is exact."""
    return 2 * k * 127 * 128 < INT32_EXACT

_PID = os.getpid()  # the process that imported this module; a forked child has another


def enabled() -> bool:
    """Whether the int8 path may run here: not switched off, not in a forked child, and onnxruntime's
    session builds and passes its check (it is a dependency of axtrain; a broken install takes the
    float path). The wide session is built when a product first needs it (:func:`wide_available`)."""
    if os.environ.get(ENV, "1").strip() == "0" or os.getpid() != _PID:
        return False
    return _session() is not None


def wide_available() -> bool:
    """Whether :func:`product` can return sums past ``2**24`` (the wide session builds and passes
    its check); built on first call, ~15 ms, only by simulations that have such GEMMs."""
    return _session(True) is not None


def build_model(wide: bool = False, packed: bool = False) -> Any:
    """The ONNX model of ``W.T @ x`` (needs the ``onnx`` package; :data:`MODEL`, :data:`MODEL_WIDE`,
    :data:`MODEL_PACKED` and :data:`MODEL_PACKED_WIDE` are its serialisations).

    Inputs: ``X`` float32 ``[k, cols]`` (integers), ``B`` int8 ``[k, n]``, the zero point as float32
    ``Zf`` and uint8 ``Z``. The graph shifts and casts ``X`` to uint8, transposes it, multiplies
    (``MatMulInteger``), and transposes and casts the int32 product back to float32 ``[n, cols]``:
    onnxruntime's transposes are several times faster than numpy's strided copies, which cost more
    than the product itself on most shapes. ``wide``: the int32 product itself, without the cast, for
    sums past float32's exact integers (the caller converts it to float64). ``packed``: ``B`` is an
    initializer instead of an input, a one-element placeholder that each weight matrix's session
    replaces (:class:`Packed`), so that onnxruntime packs the weights once, not on every call."""
    from onnx import TensorProto, helper  # only here: importing onnx costs ~1 s (MODEL is held instead)

    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["K", "C"])]
    if not packed:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.INT8, ["K", "N"]))
    inputs += [helper.make_tensor_value_info("Zf", TensorProto.FLOAT, []), helper.make_tensor_value_info("Z", TensorProto.UINT8, [])]
    initializers = [helper.make_tensor("B", TensorProto.INT8, [1, 1], [0])] if packed else []
    nodes = [
        helper.make_node("Add", ["X", "Zf"], ["shifted"]),  # integers + z in [0, 127]: exact in float32
        helper.make_node("Cast", ["shifted"], ["a_kc"], to=TensorProto.UINT8),  # exact: integers in range
        helper.make_node("Transpose", ["a_kc"], ["A"], perm=[1, 0]),
        helper.make_node("MatMulInteger", ["A", "B", "Z"], ["Y_cn"]),  # (A - z) @ B in int32
        helper.make_node("Transpose", ["Y_cn"], ["Y" if wide else "Y_nc"], perm=[1, 0]),
    ]
    if not wide:
        nodes.append(helper.make_node("Cast", ["Y_nc"], ["Y"], to=TensorProto.FLOAT))  # |Y| < 2**24 (the caller's bound)
    output = helper.make_tensor_value_info("Y", TensorProto.INT32 if wide else TensorProto.FLOAT, ["N", "C"])
    graph = helper.make_graph(nodes, "int8_gemm", inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="axtrain")
    model.ir_version = 8
    return model


#: :func:`build_model` serialised. Held as bytes because importing ``onnx`` costs ~1 s, far more than
#: the GEMMs gain on a mid-sized job; tests/runtime/test_int8gemm.py checks that it is the same model.
MODEL = bytes.fromhex(
    "080812076178747261696e3aad020a150a01580a025a6612077368696674656422034164640a200a0773686966746564"
    "1204615f6b632204436173742a090a02746f1802a001020a230a04615f6b6312014122095472616e73706f73652a0d0a"
    "047065726d40014000a001070a1e0a01410a01420a015a1204595f636e220d4d61744d756c496e74656765720a260a04"
    "595f636e1204595f6e6322095472616e73706f73652a0d0a047065726d40014000a001070a1a0a04595f6e6312015922"
    "04436173742a090a02746f1801a001021209696e74385f67656d6d5a150a015812100a0e0801120a0a0312014b0a0312"
    "01435a150a014212100a0e0803120a0a0312014b0a0312014e5a0c0a025a6612060a04080112005a0b0a015a12060a04"
    "0802120062150a015912100a0e0801120a0a0312014e0a0312014342040a00100d"
)
#: :func:`build_model` ``(wide=True)`` serialised.
MODEL_WIDE = bytes.fromhex(
    "080812076178747261696e3a8e020a150a01580a025a6612077368696674656422034164640a200a0773686966746564"
    "1204615f6b632204436173742a090a02746f1802a001020a230a04615f6b6312014122095472616e73706f73652a0d0a"
    "047065726d40014000a001070a1e0a01410a01420a015a1204595f636e220d4d61744d756c496e74656765720a230a04"
    "595f636e12015922095472616e73706f73652a0d0a047065726d40014000a001071209696e74385f67656d6d5a150a01"
    "5812100a0e0801120a0a0312014b0a031201435a150a014212100a0e0803120a0a0312014b0a0312014e5a0c0a025a66"
    "12060a04080112005a0b0a015a12060a040802120062150a015912100a0e0806120a0a0312014e0a0312014342040a00"
    "100d"
)


#: :func:`build_model` ``(packed=True)`` serialised: the weights are a session's initializer (:class:`Packed`).
MODEL_PACKED = bytes.fromhex(
    "080812076178747261696e3aa4020a150a01580a025a6612077368696674656422034164640a200a0773686966746564"
    "1204615f6b632204436173742a090a02746f1802a001020a230a04615f6b6312014122095472616e73706f73652a0d0a"
    "047065726d40014000a001070a1e0a01410a01420a015a1204595f636e220d4d61744d756c496e74656765720a260a04"
    "595f636e1204595f6e6322095472616e73706f73652a0d0a047065726d40014000a001070a1a0a04595f6e6312015922"
    "04436173742a090a02746f1801a001021209696e74385f67656d6d2a0c0801080110032a01004201425a150a01581210"
    "0a0e0801120a0a0312014b0a031201435a0c0a025a6612060a04080112005a0b0a015a12060a040802120062150a0159"
    "12100a0e0801120a0a0312014e0a0312014342040a00100d"
)
#: :func:`build_model` ``(wide=True, packed=True)`` serialised.
MODEL_PACKED_WIDE = bytes.fromhex(
    "080812076178747261696e3a85020a150a01580a025a6612077368696674656422034164640a200a0773686966746564"
    "1204615f6b632204436173742a090a02746f1802a001020a230a04615f6b6312014122095472616e73706f73652a0d0a"
    "047065726d40014000a001070a1e0a01410a01420a015a1204595f636e220d4d61744d756c496e74656765720a230a04"
    "595f636e12015922095472616e73706f73652a0d0a047065726d40014000a001071209696e74385f67656d6d2a0c0801"
    "080110032a01004201425a150a015812100a0e0801120a0a0312014b0a031201435a0c0a025a6612060a04080112005a"
    "0b0a015a12060a040802120062150a015912100a0e0806120a0a0312014e0a0312014342040a00100d"
)


@functools.lru_cache(maxsize=2)
def _session(wide: bool = False) -> Any | None:
    """One onnxruntime session of :data:`MODEL` (``wide``: :data:`MODEL_WIDE`), any sizes, on the
    calling thread (no thread pool: the executor runs its chunks in threads of its own)."""
    try:
        session = _new_session(MODEL_WIDE if wide else MODEL)
        return session if _self_check(lambda values, weights, zero: _run(session, values, zero, weights)) else None
    except Exception:  # noqa: BLE001 - any failure to build or run the session means: use the float path
        return None


def _new_session(model: bytes, weights: Any = None) -> Any:
    """An onnxruntime session of ``model`` on the calling thread (no thread pool: the executor runs
    its chunks in threads of its own); ``weights``: an ``OrtValue`` for the initializer ``B``."""
    import onnxruntime as ort  # lazy (~0.03 s): a small simulation never imports it (tests/runtime/test_startup_imports.py)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if weights is not None:
        options.add_initializer("B", weights)  # replaces the model's placeholder, shape and all
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run(session: Any, x: np.ndarray, zero: int, w8: np.ndarray | None = None) -> np.ndarray:
    """``session``'s product of ``x`` (and ``w8``, for a session whose weights are an input)."""
    feeds = {"X": np.ascontiguousarray(x, dtype=np.float32), "Zf": np.array(zero, dtype=np.float32), "Z": np.array(zero, dtype=np.uint8)}
    if w8 is not None:
        feeds["B"] = w8
    out: np.ndarray = session.run(None, feeds)[0]
    return out


def _self_check(multiply: Callable[[np.ndarray, np.ndarray, int], np.ndarray]) -> bool:
    """Whether this machine's kernels give the exact integers on worst-case operands: every
    activation at 127 against weights at -128 and 127 (the largest pair sums a 16-bit lane could
    have to hold), then seeded random ones in the full range, with and without a zero point, on a
    shape the blocked kernels tile (~1 ms, once per session). A kernel that saturated or rounded
    anywhere fails it, and then the float path runs. The reference is a float64 GEMM: every product
    and sum is an integer below ``2**53``, so it is exact (numpy's int64 GEMM has no BLAS and cost
    ~7 ms a case, serial time of every large simulation)."""
    rng = np.random.default_rng(0)
    k, n, cols = 512, 96, 80
    x = np.full((k, cols), 127.0, dtype=np.float32)
    w = np.where(rng.random((k, n)) < 0.5, -128, 127).astype(np.int8)
    w[:, 0], w[:, 1] = -128, 127  # columns of one extreme each: |sum| = 512 * 127 * 128
    cases = [(x, w, 0), (rng.integers(-60, 68, (k, cols)).astype(np.float32), rng.integers(-128, 128, (k, n)).astype(np.int8), 60)]
    for values, weights, zero in cases:
        got = multiply(values, weights, zero)
        if not np.array_equal(got, weights.astype(np.float64).T @ values.astype(np.float64)):  # (compared as values)
            return False
    return True


def worth(k: int, n: int, cols: int) -> bool:
    """Whether ``[n, k] @ [k, cols]`` gains on the int8 kernels: measured on one core against numpy's
    float32 GEMM (benchmarks/bench_runtime.py prints the ratio), it does from ``k >= 256`` and
    ``n >= 128`` (1.5-5x); shallower or narrower products lose to the conversions."""
    return k >= MIN_DEPTH and n >= MIN_ROWS and k * n * cols >= MIN_MACS


def weight_operand(w: np.ndarray) -> np.ndarray | None:
    """``w`` (integer values in a float array) as contiguous int8, or None where a value is outside
    ``[-128, 127]`` (a wider weight format, or a DRUM transform that rounded up to 128)."""
    if w.size == 0 or float(w.min()) < -128 or float(w.max()) > 127:
        return None
    return np.ascontiguousarray(w, dtype=np.int8)


def zero_point(low: float, high: float) -> int | None:
    """The ``a_zero_point`` that maps integer activations in ``[low, high]`` into ``[0, 127]``, or None."""
    shift = -int(low) if low < 0 else 0
    return shift if high + shift <= MAX_ACTIVATION else None


def product(x: np.ndarray, w8: np.ndarray | Packed, zero: int, wide: bool = False) -> np.ndarray:
    """``w8.T @ x`` ``[n, cols]``: ``x [k, cols]`` integer-valued float32 in ``[-zero, 127 - zero]``
    (:func:`zero_point`), ``w8 [k, n]`` int8 (:func:`weight_operand`). float32 when every sum is
    below ``2**24`` (the caller's bound); ``wide``: float64, for sums below :data:`INT32_EXACT`."""
    if isinstance(w8, Packed):
        out = w8.product(x, zero, wide)
    else:
        session = _session(wide)
        assert session is not None
        out = _run(session, x, zero, w8)
    return out.astype(np.float64) if wide else out


class Packed:
    """One weight matrix held by onnxruntime as an initializer of its own sessions, packed once for
    its kernels (MLAS prepacks a constant ``B``; on CPUs with AMX only a packed ``B`` takes the AMX
    kernels): 1.5-2.5x faster per product than passing the weights with every call, for ~13 ms per
    5 M weights to build. Worth it only for a matrix that multiplies many columns
    (:data:`PACK_MIN_IMAGES`)."""

    def __init__(self, w8: np.ndarray) -> None:
        import onnxruntime as ort  # lazy, as in _new_session: only a simulation that packs builds one

        self.w8 = w8
        self._value = ort.OrtValue.ortvalue_from_numpy(w8)  # kept alive with the sessions that read it
        self._sessions: dict[bool, Any] = {}
        self._lock = threading.Lock()

    def product(self, x: np.ndarray, zero: int, wide: bool) -> np.ndarray:
        """``w8.T @ x`` as :func:`product` computes it (its float32 or int32 result)."""
        session = self._sessions.get(wide)
        if session is None:
            with self._lock:
                session = self._sessions.get(wide)
                if session is None:
                    session = self._sessions[wide] = _new_session(MODEL_PACKED_WIDE if wide else MODEL_PACKED, self._value)
        return _run(session, x, zero)


@functools.lru_cache(maxsize=1)
def packing_works() -> bool:
    """Whether sessions with packed weights (:class:`Packed`) give the exact integers here: the
    checks of the plain session, each case's weights packed into a session of their own (the packed
    kernels are other code than the plain ones, AMX included), float32 and int32 results; once per
    process, a few ms."""
    def packed(wide: bool) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
        return lambda values, weights, zero: Packed(weights).product(values, zero, wide)

    try:
        return all(_self_check(packed(wide)) for wide in (False, True))
    except Exception:  # noqa: BLE001 - any failure means: keep the plain sessions
        return False


class WeightCache:
    """int8 copies of a simulation's weight tiles, made on first use and shared by the executor's
    threads (one per tile and layout; None where a tile does not fit int8). ``pack``: hold each as a
    :class:`Packed` (the simulation multiplies enough columns to repay the packing,
    :data:`PACK_MIN_IMAGES`), where :func:`packing_works`."""

    def __init__(self, pack: bool = False) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pack = pack
        self._copies: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray | Packed | None]] = {}

    def get(self, w: np.ndarray, single_run: bool) -> np.ndarray | Packed | None:
        """The ``[k, n]`` int8 operand of a tile: ``w`` itself (a shared-input tile ``[k, runs*rows]``)
        or, with ``single_run``, the transpose of the one run's ``w[0] [rows, k]``; :func:`product`
        takes either form."""
        if os.getpid() != self._pid:
            return None  # a forked child (the executor's chunk processes): no onnxruntime there
        key = (id(w), single_run)
        with self._lock:
            hit = self._copies.get(key)
            if hit is None:
                # The cache keeps ``w`` itself beside its copy, so its id is not reused while cached.
                w8 = weight_operand(w[0].T if single_run else w)
                packed = Packed(w8) if w8 is not None and self._pack and packing_works() else None
                hit = (w, packed if packed is not None else w8)
                self._copies[key] = hit
        return hit[1]
