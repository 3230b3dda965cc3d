"""DDP over gloo in 2 CPU processes: gradients equal the mean over ranks, parameters stay identical."""
import os
import pathlib
import subprocess
import sys

import pytest

from .common import torch  # noqa: F401  (skips the module without PyTorch)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "ddp_train.py"


def test_ddp_two_processes_gloo():
    dist = pytest.importorskip("torch.distributed", reason="this PyTorch has no torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this PyTorch build")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SCRIPT), "--check", "--steps", "4", "--T", "9", "--batch", "6", "--hidden", "5"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"torchrun failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "check passed: 2 ranks" in run.stdout, run.stdout[-3000:]
