"""`gpu-bptt info`: what a user sees about versions, backends and why any is unavailable."""
import subprocess
import sys

import numpy as np

import gpu_bptt
from gpu_bptt.cli import main


def test_info_lists_every_backend_with_its_reason(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"gpu_bptt {gpu_bptt.__version__}" in out
    assert f"numpy    {np.__version__}; BLAS: " in out
    section = out.split("backends:\n", 1)[1].splitlines()
    for name, reason in gpu_bptt.available_backends().items():
        line = next(l for l in section if l.strip().startswith(name + " "))
        assert ("available" if reason is None else f"unavailable: {reason}") in line
    assert f"default backend: {gpu_bptt.get_backend().name}" in out


def test_info_shows_the_cells(capsys):
    assert main(["info"]) == 0
    assert "cells:   elman, lstm, gru (gpu_bptt.nn levels; gpu-bptt train --cell)" in \
        capsys.readouterr().out.splitlines()


def test_info_reports_a_bad_backend_variable_instead_of_failing(monkeypatch, capsys):
    monkeypatch.setenv("GPU_BPTT_BACKEND", "nonsense")
    assert main(["info"]) == 0
    assert "default backend: error: backend: unknown 'nonsense'" in capsys.readouterr().out


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "gpu_bptt.cli", "info"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("gpu_bptt ")


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`gpu-bptt info | head -1`: no BrokenPipeError traceback, the shell's status for SIGPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "gpu_bptt.cli", "info"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err, err
