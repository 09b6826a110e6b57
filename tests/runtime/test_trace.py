"""runtime/trace.py and `axtrain trace`: the per-instruction trace agrees with the goldens (values)
and with the fast cycle counter (times)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bringup"))

from nets import cnn_layers, compile_bundle, export  # noqa: E402

from axtrain.cli import main  # noqa: E402
from axtrain.formats.arch import Architecture  # noqa: E402
from axtrain.formats.bundle import Bundle, load_bundle  # noqa: E402
from axtrain.runtime.events import instruction_context  # noqa: E402
from axtrain.runtime.simulator import simulate_fast  # noqa: E402
from axtrain.runtime.trace import format_csv, format_vcd, trace  # noqa: E402

TINY = Architecture(pe_rows=2, pe_cols=3, weight_buffer_bytes=96, neuron_buffer_bytes=4096, bias_buffer_words=4,
                    pe_weight_memory_bytes=16, pe_neuron_memory_bytes=16, dram_latency_cycles=5)


@pytest.fixture(scope="module", params=["default", "tiny"])
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    root = tmp_path_factory.mktemp("trace")
    layers, shape = cnn_layers()
    arch = Architecture() if request.param == "default" else TINY
    return load_bundle(compile_bundle(export(layers, shape, root / "m.onnx"), root / "b", arch))


def test_times_agree_with_the_fast_cycle_counter(bundle: Bundle) -> None:
    records = trace(bundle, bundle.load_npy("golden/inputs_int.npy")[2])
    cycles = simulate_fast(bundle.program, bundle.arch, instruction_context(bundle.program, bundle.arch, bundle.layers)).cycles
    assert records[0].start == 0 and records[-1].end == cycles == max(r.end for r in records)
    assert all(r.end > r.start for r in records)
    # The PE-side units run one instruction at a time, in program order; the DMA engine issues its
    # requests in order, one a cycle, and their transfers may overlap the PE array's work.
    pe = [r for r in records if r.unit != "dram"]
    dma = [r for r in records if r.unit == "dram"]
    assert all(a.end <= b.start for a, b in zip(pe[:-1], pe[1:], strict=True))
    assert all(a.start < b.start for a, b in zip(dma[:-1], dma[1:], strict=True))


def test_values_agree_with_the_goldens(bundle: Bundle) -> None:
    k = 3
    records = trace(bundle, bundle.load_npy("golden/inputs_int.npy")[k])
    for layer in bundle.layers:
        if layer.op == "flatten":
            continue
        golden = bundle.golden_layer(layer.index)[k].reshape(-1)
        written = {}
        for r in records[layer.program[0] : layer.program[1]]:
            for w in r.writes:
                if w.target == "NB" and r.instruction.op in ("REQ", "POOL"):
                    written.update(zip(w.addresses.tolist(), w.values.tolist(), strict=True))
        assert sorted(written) == list(range(layer.nb_output, layer.nb_output + golden.size))
        assert [written[layer.nb_output + i] for i in range(golden.size)] == golden.tolist()
    stored = next(w for r in records if r.instruction.op == "STN" for w in r.writes)
    assert stored.target == "DRAM.A" and stored.values.tolist() == bundle.golden_layer(len(bundle.layers) - 1)[k].reshape(-1).tolist()


def test_vcd_timeline(bundle: Bundle) -> None:
    records = trace(bundle, bundle.load_npy("golden/inputs_int.npy")[0])
    text = format_vcd(records, bundle.arch.clock_hz)
    body = text.split("$enddefinitions $end")[1].split("$end", 1)[1]
    times = [int(t) for t in re.findall(r"^#(\d+)$", body, re.M)]
    assert times == sorted(times) and times[-1] == records[-1].end * round(1e12 / bundle.arch.clock_hz)
    pcs = [int(v, 2) for v in re.findall(r"^b([01]+) !$", body, re.M)]
    assert pcs == sorted(set(pcs)) and pcs[-1] == len(records) - 1  # the highest index started, rising
    assert re.findall(r"^0#$", body, re.M) and re.findall(r"^1#$", body, re.M)  # dram_busy (id #) rises and falls
    rows = format_csv(records).splitlines()
    assert rows[0] == "index,op,unit,start_cycle,end_cycle,target,address,value"
    assert len(rows) - 1 == sum(max(1, sum(w.addresses.size for w in r.writes)) for r in records)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], bundle: Bundle) -> None:
    try:
        main(["trace", str(bundle.path), "--input", "golden:1", "--format", "csv", "--out", str(tmp_path / "t.csv")])
    except SystemExit as stop:
        assert stop.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("trace: golden input 1,") and (tmp_path / "t.csv").is_file()
    with pytest.raises(SystemExit) as stop:
        main(["trace", str(bundle.path), "--input", "golden:99"])
    assert stop.value.code == 2 and "the bundle has goldens 0..7" in capsys.readouterr().err
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[1].startswith("0,LDN,dram,0,") and len(rows) > len(bundle.program)
