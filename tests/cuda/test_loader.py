"""Kernel sources, name expressions and the cached loader; no compiler or device needed."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpu_bptt import activations
from gpu_bptt.backends.cuda import kernel_loader as kl
from gpu_bptt.backends.cuda import registry

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def test_every_cu_file_is_listed_and_readable():
    assert kl.kernel_files() == sorted(p.name for p in KERNELS.glob("*.cu"))
    for f in kl.kernel_files():
        src = kl.kernel_source(f)
        assert src.strip(), f
        assert '#include "' not in src, f"{f}: a local include was not expanded"
        assert kl.name_expressions(f), f


def test_each_kernel_file_states_math_shapes_launch_types_and_versions():
    for f in kl.kernel_files():
        head = kl.read_kernel(f).split("\n\n")[0]
        assert head.startswith(f"// kernels/{f}"), f
        for word in ("Shapes", "Launch", "Types"):
            assert word in head, f"{f}: header comment lacks {word!r}"
        # versions: v1, v2, ... (tc1 for the tensor-core step kernels, registry.TC_STEP)
        assert re.search(r"\b(v|tc)\d", head), f"{f}: header comment lists no numbered version"


def test_header_expanded_once():
    src = kl.kernel_source("elman_fwd_step.cu")
    assert src.count("struct TileSmem") == 1
    assert src.count("act_grad_from_output(int code") == 1


def test_activation_codes_match_the_kernel_header():
    text = kl.read_kernel("elman_common.cuh")
    codes = {m.group(1).lower(): int(m.group(2))
             for m in re.finditer(r"#define ACT_(\w+) (\d+)", text)}
    assert codes == activations.ACTIVATION_CODES


def test_template_names_and_ctype():
    assert registry.template_name("gemm_v1", np.float32, True, False) == "gemm_v1<float, true, false>"
    assert registry.ctype(np.float64) == "double"
    with pytest.raises(TypeError, match="dtype"):
        registry.ctype(np.float16)
    for f in kl.kernel_files():
        for expr in kl.name_expressions(f):
            assert re.fullmatch(r"\w+<[\w, ]+>", expr), expr


class CountingModule:
    built = []

    def __init__(self, code, options, name_expressions, enable_cooperative_groups=False):
        CountingModule.built.append((options, name_expressions))
        self.names = name_expressions

    def get_function(self, name):
        assert name in self.names
        return name


def test_loader_builds_once_per_file_options_device():
    CountingModule.built.clear()
    device = ["d0"]
    loader = kl.KernelLoader(CountingModule, device=lambda: device[0], kind="test-count")
    assert CountingModule.built == []  # nothing compiles until a kernel is asked for
    name = kl.name_expressions("column_sum.cu")[0]
    loader.function("column_sum.cu", name)
    loader.function("column_sum.cu", name)
    assert len(CountingModule.built) == 1
    kl.KernelLoader(CountingModule, device=lambda: device[0], kind="test-count").module("column_sum.cu")
    assert len(CountingModule.built) == 1  # the cache is shared by loaders of one kind
    device[0] = "d1"
    loader.function("column_sum.cu", name)
    assert len(CountingModule.built) == 2
    kl.KernelLoader(CountingModule, device=lambda: "d1", kind="test-count",
                    options=("-O3",)).module("column_sum.cu")
    assert len(CountingModule.built) == 3
    assert loader.compile_all() == {f: None for f in kl.kernel_files()}


def test_import_compiles_nothing_and_never_imports_cupy():
    code = ("import sys, gpu_bptt; import gpu_bptt.backends.cuda, gpu_bptt.backends.emulator; "
            "from gpu_bptt.backends.cuda import kernel_loader as kl; "
            "assert 'cupy' not in sys.modules, 'cupy imported'; "
            "assert not kl._MODULES, 'a module was built at import'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
