"""The compiler, the formats and the interpreter never import torch (a bring-up machine has none)."""

from __future__ import annotations

import subprocess
import sys


def test_compile_path_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import axtrain.compiler.pipeline, axtrain.compiler.package, axtrain.compiler.cli\n"
        "import axtrain.formats.bundle, axtrain.formats.isa, axtrain.formats.arch\n"
        "import axtrain.runtime.interpreter, axtrain.runtime.cli\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
