"""`axtrain compare`: an RTL dump against the goldens, the first mismatch mapped to layer, REQ
instruction, tile and PE (checked against the trace's record of who wrote the word)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from nets import cnn_layers, compile_bundle, export

from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import load_bundle
from axtrain.runtime.trace import trace

TINY = Architecture(pe_rows=2, pe_cols=3, weight_buffer_bytes=96, neuron_buffer_bytes=4096, bias_buffer_words=4,
                    pe_weight_memory_bytes=16, pe_neuron_memory_bytes=16, dram_latency_cycles=5)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    layers, shape = cnn_layers()
    return compile_bundle(export(layers, shape, root / "m.onnx"), root / "b", TINY)


def test_matching_dump_passes(tiny_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    for path in (tiny_bundle / "golden").glob("layer_*.hex"):
        shutil.copy(path, dump / path.name)
    np.save(dump / "layer_4.npy", np.load(tiny_bundle / "golden" / "layer_4.npy")[:3])  # npy, fewer images
    (dump / "layer_4.hex").unlink()
    code, out, err = run_cli(["compare", tiny_bundle, dump])
    assert code == 0, err
    assert "layer  4 d2               OK  (3 images x 7 words)" in out and out.splitlines()[-1].endswith("matches the goldens")


def test_first_mismatch_names_layer_instruction_tile_and_pe(tiny_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    b = load_bundle(tiny_bundle)
    layer = b.layers[2]  # c1: 5 x 3 x 3 outputs over a 6-PE array: several tiles
    image, word = 2, 40
    lines = (tiny_bundle / "golden" / "layer_2.hex").read_text().splitlines()
    line = image * 45 + word
    lines[line] = f"{(int(lines[line], 16) ^ 0x4) & 0xFFFF:04x}"
    (tmp_path / "layer_2.hex").write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli(["compare", tiny_bundle, tmp_path / "layer_2.hex"])
    assert code == 1
    # Who wrote NB[nb_output + 40]: the trace records each REQ's addresses in PE order.
    records = trace(b, b.load_npy("golden/inputs_int.npy")[image])
    reqs = [r for r in records[layer.program[0] : layer.program[1]] if r.instruction.op == "REQ"]
    tile = next(i for i, r in enumerate(reqs) if layer.nb_output + word in r.writes[0].addresses.tolist())
    pe = reqs[tile].writes[0].addresses.tolist().index(layer.nb_output + word)
    assert len(reqs) > 1 and tile > 0
    last = out.splitlines()[-1]
    assert last.startswith(f"first mismatch: layer 2 (c1, conv) image {image} word {word} (channel 4, y 1, x 1)")
    assert f"written by instruction {reqs[tile].index} (REQ), tile {tile} of the layer" in last
    assert f"PE {pe} (row {pe // 3}, column {pe % 3})" in last


def test_bad_dumps(tiny_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    (tmp_path / "out.hex").write_text("0001\n")
    code, _, err = run_cli(["compare", tiny_bundle, tmp_path / "out.hex"])
    assert code == 2 and "name it layer_<i>.hex" in err
    (tmp_path / "layer_0.hex").write_text("0001\nzz\n")
    code, _, err = run_cli(["compare", tiny_bundle, tmp_path / "layer_0.hex"])
    assert code == 2 and "layer_0.hex:2: 'zz' is not a 16-bit hex word" in err
    (tmp_path / "layer_0.hex").write_text("0001\n0002\n")
    code, _, err = run_cli(["compare", tiny_bundle, tmp_path / "layer_0.hex"])
    assert code == 2 and "is not a whole number of layer 0's 75-word outputs" in err
