"""The README's Python examples run as written (in order, sharing one namespace)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    ns = {}
    torch_blocks = [b for b in blocks if "gpu_bptt.torch" in b]
    for i, code in enumerate(b for b in blocks if b not in torch_blocks):
        exec(compile(code, f"README.md python block {i}", "exec"), ns)
    assert ns["g"].dW.shape == (32, 64) and ns["loss"] > 0 and ns["res"].ok
    assert torch_blocks, "the README shows the PyTorch drop-in"
    pytest.importorskip("torch", reason="PyTorch is not installed: the README's torch example cannot run")
    for code in torch_blocks:
        exec(compile(code, "README.md torch block", "exec"), ns)
    assert tuple(ns["output"].shape) == (50, 16, 256) and tuple(ns["h_n"].shape) == (2, 16, 256)
