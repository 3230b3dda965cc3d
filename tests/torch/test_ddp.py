"""Data parallel over gloo in 2 CPU processes (examples/ddp_train.py --check): gradients equal the
mean over ranks and parameters stay identical, with DDP, and with FSDP2 freeing parameters between
forward and backward."""
import os
import pathlib
import subprocess
import sys

import pytest

from .common import torch  # noqa: F401  (skips the module without PyTorch)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "ddp_train.py"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_gloo(mode):
    dist = pytest.importorskip("torch.distributed", reason="this PyTorch has no torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this PyTorch build")
    if mode == "fsdp":
        fsdp = pytest.importorskip("torch.distributed.fsdp", reason="no torch.distributed.fsdp")
        if not hasattr(fsdp, "fully_shard"):
            pytest.skip(f"torch {torch.__version__} has no FSDP2 (torch.distributed.fsdp.fully_shard)")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SCRIPT), "--check", "--steps", "3", "--T", "9", "--batch", "6", "--hidden", "5"]
    if mode == "fsdp":
        cmd.append("--fsdp")
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"torchrun failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "check passed: 2 ranks" in run.stdout, run.stdout[-3000:]
