"""The wheel ships every kernel source: build it, install it into a fresh virtual environment and
load each source through the installed package's loader (no CuPy or compiler needed)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from gpu_bptt.backends.cuda.kernel_loader import kernel_files

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from gpu_bptt.backends.cuda.kernel_loader import kernel_dir, kernel_files, kernel_source, read_kernel
where = str(kernel_dir())
assert "site-packages" in where, where
files = kernel_files()
assert files == sys.argv[1].split(","), files
for f in files:
    assert kernel_source(f).strip(), f
assert read_kernel("elman_common.cuh").strip()
print("ok", where)
"""


def test_wheel_ships_kernel_sources(tmp_path):
    # Build from a clean copy: no stale build/ output, nothing written into the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".venv", "runs"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q",
                    "-w", str(dist)], check=True, cwd=tmp_path)
    (wheel,) = dist.glob("gpu_bptt-*.whl")
    venv = tmp_path / "venv"
    # System site packages provide numpy without a download; the venv's own install wins.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True)
    # The dependencies the base interpreter may lack (ml_dtypes) from this environment's
    # site-packages, after the venv's own: the installed wheel is the gpu_bptt imported.
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "parent_env.pth").write_text("\n".join(
        p for p in sys.path if p.endswith("site-packages")) + "\n")
    out = subprocess.run([str(py), "-c", CHECK, ",".join(kernel_files())], check=True,
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.startswith("ok"), out.stdout + out.stderr
