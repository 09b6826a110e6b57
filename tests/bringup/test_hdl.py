"""`axtrain hdl`: the generated SystemVerilog package and testbench under Verilator, the C header
under gcc, both checked against the disassembly of the bundle's program."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from axtrain.bringup import hdl
from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import load_bundle
from axtrain.formats.isa import OPS, disassemble

needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed (Debian package `verilator`; .ci/run installs it)")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="module")
def generated(cnn_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hdl") / "out"
    b = load_bundle(cnn_bundle)
    hdl.generate(out, b.arch, b)
    return out


@pytest.fixture(scope="module")
def generated_rq(rq_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`axtrain hdl` (the command, in-process) on the bundle with requant entries."""
    from axtrain.cli import main

    out = tmp_path_factory.mktemp("hdl_rq") / "out"
    try:
        main(["hdl", str(rq_bundle), "--out", str(out)])
    except SystemExit as stop:
        assert not stop.code, stop.code
    return out


def build_testbench(generated: Path, work: Path) -> Path:
    """Copy ``generated`` to ``work``, lint the package, build the testbench; its binary."""
    shutil.copytree(generated, work)
    lint, build = hdl.verilator_commands(work)
    done = subprocess.run(lint, cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run(build + ["-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"], cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return work / "obj_dir" / hdl.TESTBENCH


def run_testbench(binary: Path) -> str:
    run = subprocess.run([str(binary)], cwd=binary.parent.parent, capture_output=True, text=True, timeout=60)
    return run.stdout + run.stderr


def test_package_constants_follow_the_isa_and_the_architecture(tmp_path: Path) -> None:
    arch = Architecture(pe_rows=3, pe_cols=5, neuron_buffer_bytes=1000)
    text = hdl.systemverilog_package(arch)
    assert "localparam int unsigned PE_COUNT = 15;" in text
    assert "localparam int unsigned NEURON_BUFFER_WORDS = 500;" in text  # bytes / (16 / 8)
    lsb = 8
    for field in OPS["DISTN"].fields:  # offsets are the running sum of the widths after the opcode
        assert f"localparam int unsigned DISTN_{field.name.upper()}_LSB = {lsb};" in text
        lsb += field.bits
    assert "OP_REQ = 8'h0B" in text and "logic signed [7:0] req_shift" in text


def test_cli_needs_exactly_one_source(tmp_path: Path, run_cli: Callable) -> None:
    code, _, err = run_cli(["hdl", "--out", tmp_path / "x"])
    assert code == 2 and "exactly one of BUNDLE or --arch" in err and not (tmp_path / "x").exists()


def test_cli_from_an_arch_file(tmp_path: Path, run_cli: Callable) -> None:
    (tmp_path / "a.yaml").write_text("pe_rows: 4\npe_cols: 4\n")
    code, out, err = run_cli(["hdl", "--arch", tmp_path / "a.yaml", "--out", tmp_path / "h"])
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == [hdl.HEADER_FILE, hdl.PACKAGE_FILE]
    assert "#define AXT_PE_COUNT 16u" in (tmp_path / "h" / hdl.HEADER_FILE).read_text()


@needs_verilator
def test_verilator_lints_the_package_and_the_testbench_passes(generated: Path, tmp_path: Path) -> None:
    work = tmp_path / "tb"
    binary = build_testbench(generated, work)
    assert "requant" not in (work / hdl.TESTBENCH_FILE).read_text()  # no entries: no (zero-size) array
    run = subprocess.run([str(binary)], cwd=work, capture_output=True, text=True, timeout=60)
    instructions = len((generated / "program.hex").read_text().splitlines())
    images = 2 + 1 + 5  # weights, bias, quantised golden inputs, the five layers' goldens
    assert f"PASS {instructions} instructions decoded, {images} hex images loaded" in run.stdout, run.stdout + run.stderr
    # The testbench can fail: one operand changed in the program image, then one weight word.
    lines = (work / "program.hex").read_text().splitlines()
    lines[1] = f"{int(lines[1], 16) ^ (1 << 9):032x}"
    (work / "program.hex").write_text("\n".join(lines) + "\n")
    run = subprocess.run([str(binary)], cwd=work, capture_output=True, text=True, timeout=60)
    assert "FAIL instruction 1" in run.stdout and "PASS" not in run.stdout
    shutil.copy(generated / "program.hex", work / "program.hex")
    weights = (work / "weights.hex").read_text().splitlines()
    weights[-1] = f"{(int(weights[-1], 16) + 1) & 0xFFFF:04x}"
    (work / "weights.hex").write_text("\n".join(weights) + "\n")
    run = subprocess.run([str(binary)], cwd=work, capture_output=True, text=True, timeout=60)
    assert "weights.hex sum" in run.stdout and "PASS" not in run.stdout


C_DECODER = r"""
#include <stdio.h>
#include "axtrain_isa.h"
/* An independent user of the header: decode program.bin into canonical assembly. */
int main(int argc, char **argv) {
  FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
  uint8_t b[AXT_WORD_BYTES];
  if (!f) return 2;
  while (fread(b, 1, AXT_WORD_BYTES, f) == AXT_WORD_BYTES) {
    axt_word_t w = axt_word_from_bytes(b);
    unsigned op = axt_opcode(w);
    if (op >= AXT_OPCODE_SLOTS || !axt_op_name[op]) return 3;
    printf("%s", axt_op_name[op]);
    for (unsigned i = 0; i < axt_field_count[op]; ++i) {
      unsigned lsb = axt_field_lsb[op][i], n = axt_field_bits[op][i];
      long long v = axt_field_signed[op][i] ? (long long)axt_sbits(w, lsb, n) : (long long)axt_bits(w, lsb, n);
      printf(" %s=%lld", axt_field_name[op][i], v);
    }
    if (axt_bits(w, axt_used_bits[op], 64) != 0 || (axt_used_bits[op] < 64 && w.hi != 0)) return 4;
    printf("\n");
  }
  /* the named accessors agree with the tables */
  return (AXT_REQ_SHIFT_LSB == axt_field_lsb[AXT_OP_REQ][4] && AXT_OPCODE_BITS == 8) ? 0 : 5;
}
"""


@needs_gcc
def test_c_header_compiles_and_decodes_like_the_disassembler(generated: Path, cnn_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "decode.c").write_text(C_DECODER)
    done = subprocess.run(
        ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(generated), "-o", str(tmp_path / "decode"), str(tmp_path / "decode.c")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(tmp_path / "decode"), str(cnn_bundle / "program.bin")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.returncode
    assert run.stdout == disassemble((cnn_bundle / "program.bin").read_bytes())


def test_expected_fields_hold_raw_field_bits() -> None:
    text = hdl.expected_fields("REQ nb=5 ostride=9 m=1 p=2 shift=-3 bits=8 uns=1 rq=0 qa=7\nEND\n")
    assert text.split() == ["0000000b", "00000005", "00000009", "00000001", "00000002", "000000fd", "00000008", "00000001", "00000000", "00000007", "0000000e"]


def test_memory_map_regions_do_not_overlap(cnn_bundle: Path) -> None:
    b = load_bundle(cnn_bundle)
    m = dict((name, value) for name, value, _ in hdl.memory_map(b))
    assert m["MAP_PROGRAM_BASE"] + len(b.program) * 16 <= m["MAP_WEIGHT_BASE"]
    assert m["MAP_WEIGHT_BASE"] + b.manifest.weight_words * 2 <= m["MAP_BIAS_BASE"]
    assert m["MAP_BIAS_BASE"] + b.manifest.bias_words * 4 <= m["MAP_REQUANT_BASE"] <= m["MAP_ACT_BASE"]
    assert m["MAP_ACT_STRIDE"] >= b.manifest.activation_words * 2 and m["MAP_ACT_STRIDE"] % 64 == 0
    assert all(m[k] % 4096 == 0 for k in ("MAP_WEIGHT_BASE", "MAP_BIAS_BASE", "MAP_REQUANT_BASE", "MAP_ACT_BASE"))
    assert m["MAP_OUTPUT_OFFSET"] == b.manifest.output.dram * 2
    offsets = [value for _, value, _ in hdl.HOST_REGISTERS]
    assert offsets == list(range(0, 4 * len(offsets), 4))


@needs_verilator
def test_the_testbench_loads_and_checks_the_requant_image(generated_rq: Path, rq_bundle: Path, tmp_path: Path) -> None:
    entries = load_bundle(rq_bundle).manifest.requant_entries
    assert entries > 0
    requant = (generated_rq / "requant.hex").read_text().splitlines()
    assert (generated_rq / "requant.hex").read_bytes() == (rq_bundle / "requant.hex").read_bytes() and len(requant) == 3 * entries
    package = (generated_rq / hdl.PACKAGE_FILE).read_text()
    assert f"localparam int unsigned BUNDLE_REQUANT_ENTRIES = {entries};" in package
    assert f"localparam int unsigned BUNDLE_REQUANT_WORDS = {3 * entries};" in package
    binary = build_testbench(generated_rq, tmp_path / "tb")
    instructions = len((generated_rq / "program.hex").read_text().splitlines())
    images = 2 + 1 + 1 + 5  # weights, bias, requant, quantised golden inputs, the five layers' goldens
    out = run_testbench(binary)
    assert f"PASS {instructions} instructions decoded, {images} hex images loaded" in out, out
    # One bit of one requant word (the last entry's multiplier) flipped: the checksum says so.
    requant[-3] = f"{int(requant[-3], 16) ^ (1 << 4):08x}"
    (tmp_path / "tb" / "requant.hex").write_text("\n".join(requant) + "\n")
    out = run_testbench(binary)
    assert "requant.hex sum" in out and "PASS" not in out, out


@needs_gcc
def test_c_header_decodes_the_requant_bundle_like_the_disassembler(generated_rq: Path, rq_bundle: Path, tmp_path: Path) -> None:
    program = (rq_bundle / "program.bin").read_bytes()
    assert any(line.startswith("LDQ ") for line in disassemble(program).splitlines())
    header = (generated_rq / hdl.HEADER_FILE).read_text()
    assert f"#define AXT_BUNDLE_REQUANT_ENTRIES {load_bundle(rq_bundle).manifest.requant_entries}u" in header
    (tmp_path / "decode.c").write_text(C_DECODER)
    done = subprocess.run(
        ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(generated_rq), "-o", str(tmp_path / "decode"), str(tmp_path / "decode.c")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(tmp_path / "decode"), str(rq_bundle / "program.bin")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == disassemble(program)


def test_memory_map_places_the_requant_image_between_bias_and_activations(cnn_bundle: Path, rq_bundle: Path) -> None:
    b = load_bundle(rq_bundle)
    m = dict((name, value) for name, value, _ in hdl.memory_map(b))
    assert m["MAP_BIAS_BASE"] + b.manifest.bias_words * 4 <= m["MAP_REQUANT_BASE"]
    assert m["MAP_REQUANT_BASE"] + b.manifest.requant_entries * 12 <= m["MAP_ACT_BASE"]
    assert m["MAP_REQUANT_BASE"] % 4096 == 0 and m["MAP_REQUANT_BASE"] < m["MAP_ACT_BASE"]
    plain = dict((name, value) for name, value, _ in hdl.memory_map(load_bundle(cnn_bundle)))
    assert plain["MAP_REQUANT_BASE"] == plain["MAP_ACT_BASE"]  # no entries: an empty region, ISA 1's placement
    assert dict((n, v) for n, v, _ in hdl.HOST_REGISTERS)["REG_REQUANT_BASE"] == 0x30
