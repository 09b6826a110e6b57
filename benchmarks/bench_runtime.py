"""Runtime speed (issue 5): the simulator against onnxruntime on the same images, same process.

* LeNet-5 bundle (seeded random 8-bit weights; the numerics do not depend on training) over the
  10,000 MNIST test images with drum:2 and NTV faults at 0.66 V, including input quantisation,
  the fault map, cycle and event counting and energy pricing, versus onnxruntime running the exact
  ONNX model the bundle was compiled from (bit-exact session) over the same images. Limit 2.0 (issue 15).
* MNIST-MLP bundle: 50 NTV Monte Carlo runs at 0.66 V over the 10,000 test images, reported as a
  ratio to one exact onnxruntime pass (no limit) and against the absolute 1 s of issue 15
  (``baseline`` = 1 s, limit 1.0; absolute, so it depends on the machine's load), then again with a
  spinning process holding one core (``common.one_core_taken``: the issue's "at load ~2").
* MLPerf Tiny ResNet-8 (tests/compiler/mlperf_tiny.py, seeded random weights) over 1,000 seeded
  CIFAR-sized inputs with drum:2 and NTV faults at 0.66 V, cycles and energy, versus onnxruntime
  running the same QDQ graph exactly (bit-exact session). Limit 4.0 (issue 16).

The machine is shared: the notes give the CPU seconds of the best repeat (this process and its
finished children: the simulator's machine model runs in a forked child; less sensitive to other
engineers' load than wall time) and the script prints the load average.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/bench_runtime.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axtrain.datasets import load
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.runtime.beside import usable_cpus
from axtrain.runtime.simulation import simulate
from benchmarks.common import Result, alternated_best, best_time, format_table, one_core_taken

ABSOLUTE_LIMIT_S = 1.0  # issue 15 (was 2 s in issue 5)
LENET_LIMIT = 2.0  # issue 15 (was 4 in issue 5)
RESNET8_LIMIT = 4.0  # issue 16


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the simulator's machine
    model runs in a forked child, runtime/beside.py: its time counts too)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn, repeat: int, warmup: int = 1) -> tuple[float, float]:
    """Best wall time of ``repeat`` calls after ``warmup`` calls, and the CPU seconds of that call."""
    for _ in range(warmup):
        fn()
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        fn()
        wall = time.perf_counter() - started
        if wall < best:
            best, cpu = wall, cpu_seconds() - cpu_started
    return best, cpu


def _dense(rng, name, n_out, n_in, fi, fo, relu):
    return QuantizedLayer(name, "dense", fi, fo, rng.integers(-90, 90, (n_out, n_in)), F(8, 7), rng.integers(-4000, 4000, n_out), relu)


def lenet_layers(seed: int = 0) -> list[QuantizedLayer]:
    """LeNet-5 (conv5x5x6 pad2, pool, conv5x5x16, pool, 120, 84, 10) with random 8-bit weights."""
    rng = np.random.default_rng(seed)

    def conv(name, oc, ic, fi, fo, pad):
        return QuantizedLayer(name, "conv", fi, fo, rng.integers(-90, 90, (oc, ic, 5, 5)), F(8, 7), rng.integers(-4000, 4000, oc), True, padding=pad)

    return [
        conv("conv1", 6, 1, F(8, 4), F(8, 1), 2),
        QuantizedLayer("pool1", "maxpool", F(8, 1), F(8, 1), kernel=2, stride=2),
        conv("conv2", 16, 6, F(8, 1), F(8, -1), 0),
        QuantizedLayer("pool2", "maxpool", F(8, -1), F(8, -1), kernel=2, stride=2),
        QuantizedLayer("flatten", "flatten", F(8, -1), F(8, -1)),
        _dense(rng, "fc1", 120, 400, F(8, -1), F(8, -1), True),
        _dense(rng, "fc2", 84, 120, F(8, -1), F(8, 0), True),
        _dense(rng, "fc3", 10, 84, F(8, 0), F(8, 1), False),
    ]


def mlp_layers(seed: int = 0) -> list[QuantizedLayer]:
    """784-128-128-10 with random 8-bit weights."""
    rng = np.random.default_rng(seed)
    return [
        _dense(rng, "fc1", 128, 784, F(8, 4), F(8, 1), True),
        _dense(rng, "fc2", 128, 128, F(8, 1), F(8, 1), True),
        _dense(rng, "fc3", 10, 128, F(8, 1), F(8, 2), False),
    ]


def build(layers: list[QuantizedLayer], shape: tuple[int, ...], out: Path, app: str) -> Path:
    """Export and compile ``layers``; returns the bundle path (the ONNX file sits beside it)."""
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.trainer.export import export_layers, save_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = export_layers(layers, shape, {"app": app, "seed": "0"})
    save_model(model, out.with_suffix(".onnx"))
    return compile_to_bundle(out.with_suffix(".onnx"), out, overwrite=True)


def run(quick: bool = False) -> list[Result]:
    """Time both workloads against onnxruntime measured in this process."""
    from axtrain.trainer.export import bit_exact_session

    repeat = 2 if quick else 3
    images = 2000 if quick else 10000
    runs = 10 if quick else 50
    data = load("mnist-cnn")
    x, y = data.x_test[:images], data.y_test[:images]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        lenet = build(lenet_layers(), (1, 28, 28), Path(tmp) / "lenet", "mnist-cnn")
        mlp = build(mlp_layers(), (784,), Path(tmp) / "mlp", "mnist-mlp")

        session = bit_exact_session(lenet.with_suffix(".onnx"))
        bundle = load_bundle(lenet)
        # Interleaved repeats: both sides see the same load.
        t_ort, c_ort, t_sim, c_sim = float("inf"), 0.0, float("inf"), 0.0
        for _ in range(repeat):
            wall, cpu = timed(lambda: session.run(None, {"input": x}), repeat=1)
            t_ort, c_ort = (wall, cpu) if wall < t_ort else (t_ort, c_ort)
            wall, cpu = timed(lambda: simulate(bundle, x, y, multiplier="drum:2", sram_voltage=0.66, runs=1, seed=0), repeat=1)
            t_sim, c_sim = (wall, cpu) if wall < t_sim else (t_sim, c_sim)
        results.append(Result(f"lenet5 {images} img drum:2 NTV 0.66V +cycles+energy", t_sim, "onnxruntime exact ONNX", t_ort, limit=LENET_LIMIT,
                              note=f"{images / t_sim:.0f} img/s simulated, {images / t_ort:.0f} img/s onnxruntime; "
                                   f"CPU s: sim {c_sim:.2f}, onnxruntime {c_ort:.2f} (ratio {c_sim / c_ort:.2f})"))

        xm = x.reshape(len(x), -1)
        session = bit_exact_session(mlp.with_suffix(".onnx"))
        t_ort = best_time(lambda: session.run(None, {"input": xm}), repeat=repeat)
        bundle = load_bundle(mlp)

        def monte_carlo() -> None:
            simulate(bundle, xm, y, sram_voltage=0.66, runs=runs, seed=0)

        t_runs, c_runs = timed(monte_carlo, repeat=repeat)
        results.append(Result(f"mnist-mlp {runs} NTV runs x {images} img 0.66V", t_runs, "one onnxruntime exact pass", t_ort,
                              note=f"{t_runs:.2f} s for {runs} runs ({t_runs / runs * 1000:.0f} ms per run)"))
        results.append(Result(f"mnist-mlp {runs} NTV runs (absolute)", t_runs, f"absolute limit {ABSOLUTE_LIMIT_S:g} s", ABSOLUTE_LIMIT_S, limit=1.0,
                              note=f"{t_runs:.2f} s wall, {c_runs:.2f} CPU s; the issue asks <= {ABSOLUTE_LIMIT_S:g} s on the 2-core machine"))
        cpus = usable_cpus()
        if cpus >= 2:
            # Issue 15 asks for the figure "at load ~2": measured again with one core held by a
            # spinning process, so that `make bench` prints the condition the issue names.
            with one_core_taken():
                t_load, c_load = timed(monte_carlo, repeat=repeat)
                load_avg = os.getloadavg()[0]
            results.append(Result(f"mnist-mlp {runs} NTV runs, one core taken", t_load, f"absolute limit {ABSOLUTE_LIMIT_S:g} s", ABSOLUTE_LIMIT_S, limit=1.0,
                                  note=f"{t_load:.2f} s wall, {c_load:.2f} CPU s with a spinning process on one of {cpus} CPUs "
                                       f"(load average {load_avg:.2f}); the issue's 'at load ~2'"))

        results.append(_resnet8(Path(tmp), repeat, 200 if quick else 1000))
    results.extend(_int8_gemm(repeat))
    return results


def _int8_gemm(repeat: int) -> list[Result]:
    """The 50-run first layer's shared GEMM, one image chunk (``[784 x 6400]^T @ [784 x 182]``), on
    onnxruntime's int8 kernels (runtime/int8gemm.py) against numpy's float32 GEMM, one thread each."""
    from axtrain.runtime import int8gemm
    from axtrain.runtime.blas import blas_threads

    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (784, 6400)).astype(np.float32)
    x = rng.integers(-7, 46, (784, 182)).astype(np.float32)
    name = "shared 784x6400 GEMM x 182 img: int8 kernels"
    if not int8gemm.enabled():
        return [Result(name, float("nan"), "numpy float32 GEMM", float("nan"), note="onnxruntime's int8 session unavailable here")]
    w8 = int8gemm.weight_operand(w)
    assert w8 is not None
    packed = int8gemm.Packed(w8) if int8gemm.packing_works() else None
    with blas_threads(1):
        for operand in (w8, packed) if packed is not None else (w8,):
            if not np.array_equal(int8gemm.product(x, operand, 7), w.T @ x):
                raise AssertionError("int8 GEMM differs from the float32 GEMM")
        t_float, t_int8 = alternated_best(lambda: w.T @ x, lambda: int8gemm.product(x, w8, 7), 2 * repeat, repeat=3)
        results = [Result(name, t_int8, "numpy float32 GEMM (1 thread)", t_float, note="same integers (checked here); one thread each")]
        if packed is not None:
            t_float, t_packed = alternated_best(lambda: w.T @ x, lambda: int8gemm.product(x, packed, 7), 2 * repeat, repeat=3)
            results.append(Result("  same, weights packed once (int8gemm.Packed)", t_packed, "numpy float32 GEMM (1 thread)", t_float,
                                  note="what a simulation of >= 4096 images runs (decision 223)"))
    return results


def _resnet8(tmp: Path, repeat: int, images: int) -> Result:
    """ResNet-8 with drum:2 + NTV 0.66 V + cycles + energy against onnxruntime's exact pass."""
    import onnx

    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.trainer.export import bit_exact_session

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compiler"))
    import mlperf_tiny  # noqa: PLC0415 - the test helper that builds the MLPerf Tiny graphs

    onnx.save(mlperf_tiny.resnet8(), tmp / "resnet8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = load_bundle(compile_to_bundle(tmp / "resnet8.onnx", tmp / "resnet8", overwrite=True))
    session = bit_exact_session(tmp / "resnet8.onnx")
    name = session.get_inputs()[0].name
    x = np.random.default_rng(1).random((images, 3, 32, 32), dtype=np.float32)
    t_ort, t_sim, c_ort, c_sim = float("inf"), float("inf"), 0.0, 0.0
    for _ in range(repeat):  # interleaved: both sides see the same load
        wall, cpu = timed(lambda: session.run(None, {name: x}), repeat=1)
        t_ort, c_ort = (wall, cpu) if wall < t_ort else (t_ort, c_ort)
        wall, cpu = timed(lambda: simulate(bundle, x, None, multiplier="drum:2", sram_voltage=0.66, runs=1, seed=0), repeat=1)
        t_sim, c_sim = (wall, cpu) if wall < t_sim else (t_sim, c_sim)
    macs = sum(layer.macs for layer in bundle.layers) * images
    return Result(f"resnet-8 {images} img drum:2 NTV 0.66V +cycles+energy", t_sim, "onnxruntime exact QDQ graph", t_ort, limit=RESNET8_LIMIT,
                  note=f"{t_sim / macs * 1e9:.3f} ns per simulated MAC; CPU s: sim {c_sim:.2f}, onnxruntime {c_ort:.2f} (ratio {c_sim / c_ort:.2f})")


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv)
    print(format_table(results))
    for r in results:
        print(f"  {r.name}: {r.note}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
