"""The training loop: learning, truncated BPTT, checkpoints and resume, non-finite losses, the CLI."""
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from gpu_bptt import checkpoint, nn
from gpu_bptt.backends import get_backend
from gpu_bptt.cli import main
from gpu_bptt.progress import Progress
from gpu_bptt.tasks import AddingTask
from gpu_bptt.train import Config, build_model, resolve, run_batch, train

from .tolerances import assert_close

# Small enough that every run below takes well under a second.
TINY = ["--seq-len", "8", "--hidden", "8", "--batch", "8", "--quiet"]


def tiny(**kw):
    base = dict(task="adding", seq_len=8, hidden=8, batch=8, backend="numpy", progress=False)
    return Config(**{**base, **kw})


def params(folder):
    meta, arrays = checkpoint.load(folder)
    return meta, {k: v for k, v in arrays.items() if k.startswith("param/")}


def test_a_short_run_lowers_the_loss_below_the_baseline():
    res = train(tiny(task="sine", seq_len=20, hidden=16, batch=32, steps=300))
    first, last = np.mean(res.losses[:20]), np.mean(res.losses[-20:])
    assert last < 0.3 * first, (first, last)
    assert res.eval_metric < 0.5 * res.baseline, (res.eval_metric, res.baseline)
    assert res.steps == 300 and res.backend == "numpy" and res.metric == "MSE"


@pytest.mark.parametrize("task", ["adding", "copy", "charlm"])
def test_other_tasks_train_without_error(task, tmp_path):
    text = None
    if task == "charlm":
        text = tmp_path / "t.txt"
        text.write_text("abcabd " * 40, encoding="utf-8")
    res = train(tiny(task=task, seq_len=12, steps=20, text=None if text is None else str(text)))
    assert np.isfinite(res.losses).all() and np.isfinite(res.eval_metric) and res.baseline > 0


def _model_and_batch(task, trunc_seed=0):
    bk = get_backend("numpy")
    cfg = resolve(tiny(steps=1))
    return bk, build_model(task, cfg, bk, np.random.default_rng(trunc_seed))


def test_trunc_at_least_the_sequence_length_is_full_bptt():
    task = AddingTask(10)
    batch = task.sample(np.random.default_rng(2), 4)
    bk, model = _model_and_batch(task)
    a = run_batch(model, task, batch, bk)
    ga = {k: v.copy() for k, v in model.gradients().items()}
    model.zero_grad()
    b = run_batch(model, task, batch, bk, trunc=10)
    assert a == b and all(np.array_equal(ga[k], v) for k, v in model.gradients().items())


@pytest.mark.parametrize("extra", [
    dict(optimizer="adam"),
    dict(optimizer="momentum", bptt_trunc=3, min_len=4),
    dict(optimizer="sgd", task="sine", clip=0.0),
])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, extra):
    straight = train(tiny(steps=24, out=str(tmp_path / "a"), checkpoint_every=10, **extra))
    half = train(tiny(steps=12, out=str(tmp_path / "b"), checkpoint_every=10, **extra))
    assert half.steps == 12
    resumed = train(Config(steps=24, out=str(tmp_path / "b"), resume=True, progress=False))
    assert resumed.steps == 24
    assert resumed.losses == straight.losses
    assert resumed.final_loss == straight.final_loss and resumed.eval_metric == straight.eval_metric
    meta_a, pa = params(tmp_path / "a")
    meta_b, pb = params(tmp_path / "b")
    assert meta_a["step"] == meta_b["step"] == 24 and meta_a["rng"] == meta_b["rng"]
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_checkpoint_files_are_replaced_whole(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(tiny(steps=10, out=str(out), checkpoint_every=5))
    assert sorted(os.listdir(out)) in (["checkpoint-00000010.npz", "checkpoint.json"],
                                       ["checkpoint-00000010.npz", "checkpoint.json", "loss.png"])
    before = (out / "checkpoint.json").read_bytes()
    _, p_before = params(out)

    def broken_savez(f, **arrays):
        f.write(b"PK half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        train(Config(steps=15, out=str(out), resume=True, progress=False))
    assert (out / "checkpoint.json").read_bytes() == before
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    _, p_after = params(out)
    assert all(np.array_equal(p_before[k], p_after[k]) for k in p_before)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    good = train(tiny(steps=5, out=str(tmp_path / "good")))
    real_sample, calls = AddingTask.sample, {"n": 0}

    def sample_with_nan(self, rng, batch):
        b = real_sample(self, rng, batch)
        calls["n"] += 1
        if calls["n"] >= 8:
            b.x[0, 0, 0] = np.nan
        return b

    monkeypatch.setattr(AddingTask, "sample", sample_with_nan)
    out = tmp_path / "run"
    rc = main(["train", *TINY, "--steps", "20", "--checkpoint-every", "5", "--backend", "numpy",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3
    assert "training stopped at step 8: the loss is nan" in err
    assert "--lr" in err and "last good checkpoint (step 5)" in err and "Traceback" not in err
    meta, p = params(out)
    assert meta["step"] == 5
    _, p_good = params(tmp_path / "good")
    assert all(np.array_equal(p[k], p_good[k]) for k in p_good) and good.steps == 5


def test_absurd_learning_rate_stops_with_a_hint_to_clip(capsys):
    rc = main(["train", *TINY, "--steps", "50", "--optimizer", "sgd", "--lr", "1e30", "--clip", "0",
               "--no-save", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert rc == 3 and "training stopped at step" in err and "--clip 1.0" in err
    assert "No checkpoint had been written yet" in err


def test_ctrl_c_saves_a_checkpoint_between_steps(tmp_path, monkeypatch, capsys):
    real_sample, calls = AddingTask.sample, {"n": 0}

    def sample_then_interrupt(self, rng, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real_sample(self, rng, batch)

    monkeypatch.setattr(AddingTask, "sample", sample_then_interrupt)
    out = tmp_path / "run"
    rc = main(["train", *TINY, "--steps", "20", "--backend", "numpy", "--out", str(out)])
    assert rc == 130 and "--resume" in capsys.readouterr().err
    assert checkpoint.load(out)[0]["step"] == 4


def test_json_summary_and_readable_summary(tmp_path, capsys):
    rc = main(["train", *TINY, "--steps", "6", "--json", "--backend", "numpy", "--out", str(tmp_path / "r")])
    cap = capsys.readouterr()
    assert rc == 0
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert {"task", "steps", "final_loss", "eval_metric", "baseline", "backend", "seconds"} <= set(summary)
    assert summary["task"] == "adding" and summary["steps"] == 6 and summary["backend"] == "numpy"
    assert "held-out MSE" in cap.err and "baseline (always 1.0)" in cap.err


def test_defaults_of_the_command_with_no_arguments():
    cfg = resolve(Config())
    assert (cfg.task, cfg.seq_len, cfg.hidden, cfg.batch, cfg.steps) == ("adding", 30, 64, 128, 8000)
    assert (cfg.optimizer, cfg.lr, cfg.clip, cfg.bptt_trunc, cfg.activation) == ("adam", 2e-3, 1.0, 0, "tanh")
    copy = resolve(Config(task="copy"))
    assert (copy.activation, copy.lr) == ("relu", 1e-3)
    assert resolve(Config(task="copy", optimizer="sgd")).lr == 0.05   # the task's adam lr only for adam
    with pytest.raises(ValueError, match="--resume: needs the run's folder"):
        train(Config(resume=True))


def test_resume_keeps_the_checkpoint_settings(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *TINY, "--steps", "4", "--backend", "numpy", "--out", out]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", out, "--hidden", "16", "--quiet"]) == 2
    assert "--hidden 16 differs from the checkpoint's 8" in capsys.readouterr().err
    assert main(["train", *TINY, "--steps", "4", "--backend", "numpy", "--out", out]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", out, "--steps", "6", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 6


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "--task: unknown 'nope'"),
    (["--hidden", "0"], "--hidden: must be a positive integer, got 0"),
    (["--steps", "-5"], "--steps: must be a positive integer, got -5"),
    (["--batch", "0"], "--batch: must be a positive integer"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--bptt-trunc", "-1"], "--bptt-trunc"),
    (["--task", "charlm"], "--text PATH"),
    (["--task", "charlm", "--text", "/no/such/file.txt"], "--text: no such file: /no/such/file.txt"),
    (["--optimizer", "rmsprop"], "--optimizer: unknown 'rmsprop'"),
    (["--backend", "tpu"], "--backend: unknown 'tpu'"),
    (["--min-len", "40"], "--min-len: must be in 1..30"),
    (["--resume"], "no checkpoint in"),
])
def test_bad_arguments_exit_with_a_message(args, message, tmp_path, capsys):
    rc = main(["train", "--quiet", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x" / "checkpoint.json").exists()


def test_command_line_error_in_a_subprocess(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "gpu_bptt.cli", "train", "--seq-len", "0", "--no-save"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert p.returncode == 2
    assert "gpu-bptt train: error: --seq-len: must be a positive integer, got 0" in p.stderr
    assert "Traceback" not in p.stderr


def test_progress_writes_tenths_to_a_log_and_redraws_on_a_terminal():
    log = io.StringIO()
    bar = Progress(100, 0, 8, stream=log)
    for s in range(1, 101):
        bar.update(s, 0.5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("step 100/100") and "seq/s" in lines[-1]

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = Progress(100, 50, 8, stream=tty)
    bar.update(100, 0.25)
    bar.close()
    assert tty.getvalue().startswith("\rstep 100/100") and "loss 0.25" in tty.getvalue()


def test_blas_threads_limits_and_restores_openblas():
    from gpu_bptt.blas_threads import _openblas_controls, blas_threads

    controls = _openblas_controls()
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    if "openblas" in blas.lower():
        assert controls, f"NumPy's BLAS is {blas}, but its thread setter was not found"
    before = [get() for get, _ in controls]
    with blas_threads(1):
        assert all(get() == 1 for get, _ in controls)
    assert [get() for get, _ in controls] == before


def test_default_out_never_collides_and_resume_takes_the_newest(tmp_path, monkeypatch):
    from gpu_bptt import checkpoint
    from gpu_bptt.train import default_out

    monkeypatch.chdir(tmp_path)
    assert default_out("adding", resume=False) == os.path.join("runs", "adding")
    for d in ("adding", "adding-2"):
        os.makedirs(os.path.join("runs", d))
        open(os.path.join("runs", d, "checkpoint.json"), "w").write("{}")
    assert checkpoint.exists(os.path.join("runs", "adding-2"))
    assert default_out("adding", resume=False) == os.path.join("runs", "adding-3")
    assert default_out("adding", resume=True) == os.path.join("runs", "adding-2")
    assert default_out("sine", resume=True) == os.path.join("runs", "sine")
