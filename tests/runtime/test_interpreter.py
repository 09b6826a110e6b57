"""The reference interpreter on hand-written programs, against values worked out independently."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.errors import BundleError
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import check_program, parse_assembly
from axtrain.hwmodels.multipliers import multiply_reference
from axtrain.runtime.interpreter import run_program

ARCH = Architecture(pe_rows=2, pe_cols=2, pe_weight_memory_bytes=8, pe_neuron_memory_bytes=8)


def run(text: str, weights: list[int], bias: list[int], dram: np.ndarray, arch: Architecture = ARCH):
    program = parse_assembly(text)
    check_program(program, arch, len(weights), len(bias), dram.shape[1])
    return run_program(program, arch, np.array(weights), np.array(bias), dram)


DENSE = """
LDN nb=0 dram=0 count=3
CONV c=3 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
LDB bb=0 dram=0 count=2
MODE mt=0 count=1 code=0
MODE mt=1 count=1 code={code}
LDW wb=0 dram=0 rows=2 cols=3 stride=3
DISTW wb=0 stride=3 m=2 p=1 k=2
DISTN nb=0 p0=0 m=2 p=1 k0=0 k=2
MAC m=2 p=1 k=2 bb=0 mt=0 init=1
DISTW wb=2 stride=3 m=2 p=1 k=1
DISTN nb=0 p0=0 m=2 p=1 k0=2 k=1
MAC m=2 p=1 k=1 bb=0 mt=0 init=0
RELU m=2 p=1
REQ nb=10 ostride=1 m=2 p=1 shift=2 bits=4
SYNC layer=0 nb=10 count=2 space=0
STN dram=3 nb=10 count=2
END
"""


def test_dense_in_two_chunks_with_ties_relu_and_saturation() -> None:
    w = [3, -2, 1, 7, 5, -6]
    b = [2, 1]
    x = np.array([[1, 2, 2, 0, 0], [2, 1, 0, 0, 0], [30, 20, 10, 0, 0]])
    result = run(DENSE.format(code=0), w, b, x)
    # Row 0: acc0 = 3-4+2+2 = 3 -> 3/4 = 0.75 -> 1; acc1 = 7+10-12+1 = 6 -> 1.5 -> 2 (tie to even).
    # Row 1: acc0 = 6-2+0+2 = 6 -> 2; acc1 = 14+5+1 = 20 -> 5.
    # Row 2: acc0 = 90-40+10+2 = 62 -> 15.5 -> 16 -> saturates at 7 (4 bits); acc1 = 210+100-60+1 = 251 -> 7.
    expected = np.array([[1, 2], [2, 5], [7, 7]])
    np.testing.assert_array_equal(result.layer_outputs[0], expected)
    np.testing.assert_array_equal(result.dram_a[:, 3:5], expected)
    # ReLU: a negative accumulator becomes 0.
    neg = run(DENSE.format(code=0), [-3, -2, -1, 1, 1, 1], [0, 0], np.array([[1, 1, 1, 0, 0]]))
    np.testing.assert_array_equal(neg.layer_outputs[0], [[0, 1]])


def test_mode_table_selects_drum_per_neuron() -> None:
    w = [100, 77, -93, 55, 121, -66]
    x = np.array([[45, -99, 27, 0, 0]])
    result = run(DENSE.format(code=1).replace("shift=2 bits=4", "shift=0 bits=16"), w, [0, 0], x)
    exact0 = sum(a * b for a, b in zip([45, -99, 27], w[:3], strict=True))
    drum1 = sum(multiply_reference(a, b, "drum:1") for a, b in zip([45, -99, 27], w[3:], strict=True))
    np.testing.assert_array_equal(result.layer_outputs[0], [[max(exact0, 0), max(drum1, 0)]])
    assert drum1 != sum(a * b for a, b in zip([45, -99, 27], w[3:], strict=True))


def test_conv_with_padding_and_pool() -> None:
    # One 3x3 input channel, a 2x2 kernel of ones, padding 1 -> a 4x4 map of window sums; then 2x2 max pool.
    image = np.arange(1, 10).reshape(1, 9)
    text = """
LDN nb=0 dram=0 count=9
CONV c=1 h=3 w=3 kh=2 kw=2 sh=1 sw=1 pt=1 pl=1 pb=1 pr=1 padv=0 oh=4 ow=4
LDB bb=0 dram=0 count=1
MODE mt=0 count=1 code=0
LDW wb=0 dram=0 rows=1 cols=4 stride=4
DISTW wb=0 stride=4 m=1 p=4 k=4
DISTN nb=0 p0=0 m=1 p=4 k0=0 k=4
MAC m=1 p=4 k=4 bb=0 mt=0 init=1
REQ nb=20 ostride=16 m=1 p=4 shift=0 bits=16
DISTN nb=0 p0=4 m=1 p=4 k0=0 k=4
MAC m=1 p=4 k=4 bb=0 mt=0 init=1
REQ nb=24 ostride=16 m=1 p=4 shift=0 bits=16
DISTN nb=0 p0=8 m=1 p=4 k0=0 k=4
MAC m=1 p=4 k=4 bb=0 mt=0 init=1
REQ nb=28 ostride=16 m=1 p=4 shift=0 bits=16
DISTN nb=0 p0=12 m=1 p=4 k0=0 k=4
MAC m=1 p=4 k=4 bb=0 mt=0 init=1
REQ nb=32 ostride=16 m=1 p=4 shift=0 bits=16
SYNC layer=0 nb=20 count=16 space=0
POOL dst=40 src=20 c=1 h=4 w=4 kh=2 kw=2 sh=2 sw=2 pt=0 pl=0 pb=0 pr=0
SYNC layer=1 nb=40 count=4 space=0
END
"""
    result = run(text, [1, 1, 1, 1], [10], np.pad(image, ((0, 0), (0, 0))))
    padded = np.pad(np.arange(1, 10).reshape(3, 3), 1)
    sums = np.array([[padded[i : i + 2, j : j + 2].sum() for j in range(4)] for i in range(4)]) + 10
    np.testing.assert_array_equal(result.layer_outputs[0].reshape(4, 4), sums)
    np.testing.assert_array_equal(result.layer_outputs[1].reshape(2, 2), [[sums[:2, :2].max(), sums[:2, 2:].max()], [sums[2:, :2].max(), sums[2:, 2:].max()]])


def test_static_checks_and_runtime_errors() -> None:
    with pytest.raises(BundleError, match="program does not end with END"):
        check_program(parse_assembly("RELU m=1 p=1"), ARCH)
    with pytest.raises(BundleError, match=r"instruction 0 \(MAC\): tile of m\*p = 5 PEs outside \[1, 4\]"):
        check_program(parse_assembly("MAC m=5 p=1 k=1 bb=0 mt=0 init=1\nEND"), ARCH)
    with pytest.raises(BundleError, match=r"instruction 0 \(DISTN\): DISTN before any CONV"):
        check_program(parse_assembly("DISTN nb=0 p0=0 m=1 p=1 k0=0 k=1\nEND"), ARCH)
    with pytest.raises(BundleError, match="does not match the geometry"):
        check_program(parse_assembly("CONV c=1 h=3 w=3 kh=2 kw=2 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=3 ow=2\nEND"), ARCH)
    small = Architecture(pe_rows=1, pe_cols=1, accumulator_bits=32, pe_weight_memory_bytes=8, pe_neuron_memory_bytes=8)
    overflow = "LDN nb=0 dram=0 count=2\nCONV c=2 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1\nLDW wb=0 dram=0 rows=1 cols=2 stride=2\nDISTW wb=0 stride=2 m=1 p=1 k=2\nDISTN nb=0 p0=0 m=1 p=1 k0=0 k=2\nMAC m=1 p=1 k=2 bb=0 mt=0 init=1\nEND"
    result = run_program(parse_assembly(overflow), small, np.array([32767, 32767]), np.array([0]), np.array([[32767, 32767]]))
    assert result.layer_outputs == {} and result.dram_a.tolist() == [[32767, 32767]]
    # 2 * 32767**2 = 2147352578 fits below 2**31; a bias of 10**6 on top overflows.
    with pytest.raises(BundleError, match=r"instruction 6 \(MAC\): accumulator of PE 0 overflows 32 bits"):
        run_program(parse_assembly("LDB bb=0 dram=0 count=1\n" + overflow), small, np.array([32767, 32767]), np.array([10**6]), np.array([[32767, 32767]]))
