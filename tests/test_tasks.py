"""Built-in task generators: shapes, targets, seeding, variable lengths, baselines, bad settings."""
import math

import numpy as np
import pytest

from gpu_bptt.tasks import TaskError, make_task


def rng(seed=0):
    return np.random.default_rng(seed)


def valid(lengths, T, B):
    L = np.full(B, T) if lengths is None else lengths
    return np.arange(T)[:, None] < L[None, :], L


@pytest.mark.parametrize("name", ["adding", "copy", "sine"])
@pytest.mark.parametrize("min_len", [None, 23])
def test_synthetic_tasks_are_seeded_and_pad_with_zeros(name, min_len):
    task = make_task(name, 33, min_len)
    a, b, c = task.sample(rng(1), 7), task.sample(rng(1), 7), task.sample(rng(2), 7)
    assert a.x.shape == (33, 7, task.input_size) and a.x.dtype == np.float32
    assert np.array_equal(a.x, b.x) and np.array_equal(a.target, b.target)
    assert not np.array_equal(a.x, c.x)
    if min_len is None:
        assert a.lengths is None
    else:
        assert a.lengths.shape == (7,) and a.lengths.min() >= 23 and a.lengths.max() <= 33
        pad = ~valid(a.lengths, 33, 7)[0]
        assert not a.x[pad].any() and not a.target[pad].any()
    # the held-out set does not depend on anything but the task
    e1, e2 = task.eval_batches(), make_task(name, 33, min_len).eval_batches()
    assert sum(e.size for e in e1) == task.eval_size
    assert all(np.array_equal(p.x, q.x) for p, q in zip(e1, e2))


@pytest.mark.parametrize("min_len", [None, 4])
def test_adding_markers_and_target(min_len):
    task = make_task("adding", 30, min_len)
    b = task.sample(rng(3), 500)
    ok, L = valid(b.lengths, 30, 500)
    values, marks = b.x[:, :, 0], b.x[:, :, 1]
    assert ((values[ok] >= 0) & (values[ok] <= 1)).all()
    assert (marks.sum(axis=0) == 2).all() and set(np.unique(marks)) <= {0.0, 1.0}
    t = np.arange(30)[:, None]
    half = (L // 2)[None, :]
    assert ((marks * (t < half)).sum(axis=0) == 1).all()               # one in the first half
    assert ((marks * ((t >= half) & ok)).sum(axis=0) == 1).all()       # one in the second half
    expect = (values * marks).sum(axis=0)
    assert np.allclose(b.target[L - 1, np.arange(500), 0], expect)
    assert np.count_nonzero(b.target) == np.count_nonzero(expect)      # only at the last step


def test_adding_baseline_is_one_sixth():
    task = make_task("adding", 30)
    assert abs(task.baseline(task.eval_batches()) - 1 / 6) < 0.02


@pytest.mark.parametrize("min_len", [None, 25])
def test_copy_recalls_the_symbols_after_the_delimiter(min_len):
    task = make_task("copy", 31, min_len)
    N, K = task.n_copy, task.symbols
    b = task.sample(rng(4), 9)
    ok, L = valid(b.lengths, 31, 9)
    tokens = b.x.argmax(axis=2)
    assert np.array_equal(b.x.sum(axis=2), ok.astype(np.float32))     # one-hot at valid steps
    for j in range(9):
        seq = tokens[:N, j]
        assert ((seq >= 1) & (seq <= K)).all()
        assert tokens[L[j] - N - 1, j] == K + 1                         # the delimiter
        assert (tokens[N:L[j] - N - 1, j] == 0).all()                   # the delay: blanks
        assert np.array_equal(b.target[L[j] - N:L[j], j], seq)
        assert not b.target[:L[j] - N, j].any()
    steps = L.sum()
    assert math.isclose(task.baseline([b]), 9 * N * math.log(K) / steps)


@pytest.mark.parametrize("seq_len, min_len, n_copy", [(30, None, 3), (200, None, 3), (30, 6, 2), (3, None, 1)])
def test_copy_holds_three_symbols_and_its_checkpoint_record_says_so(seq_len, min_len, n_copy):
    # Three symbols (not 10) so that the delay, not the number of symbols, is what is hard
    # (docs/training.md, the copy-memory series); a checkpoint of another count must not resume.
    task = make_task("copy", seq_len, min_len)
    assert task.n_copy == n_copy and task.symbols == 8
    b = task.sample(rng(7), 5)
    assert (np.count_nonzero(b.target, axis=0) == n_copy).all()        # symbols are never blank
    assert task.meta() == {"task": "copy", "seq_len": seq_len, "min_len": min_len or seq_len,
                           "n_copy": n_copy, "symbols": 8}


def test_sine_target_is_the_next_value_and_persistence_baseline():
    task = make_task("sine", 40)
    b = task.sample(rng(5), 6)
    assert np.allclose(b.target[:-1], b.x[1:])
    assert np.abs(b.x).max() <= 1.0
    assert math.isclose(task.baseline([b]), float(((b.target - b.x) ** 2).mean()), rel_tol=1e-6)


@pytest.fixture
def text_file(tmp_path):
    r = rng(6)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat.\n", "dog "]
    p = tmp_path / "text.txt"
    p.write_text("".join(words[i] for i in r.integers(0, len(words), 600)), encoding="utf-8")
    return p


def test_charlm_windows_are_next_character_pairs(text_file):
    task = make_task("charlm", 20, text=str(text_file))
    text = text_file.read_text(encoding="utf-8")
    assert task.vocab == sorted(set(text)) and task.input_size == len(task.vocab)
    assert task.min_len == 10                                      # variable lengths by default
    b = task.sample(rng(7), 16)
    ok, L = valid(b.lengths, 20, 16)
    assert b.lengths is not None and L.min() >= 10
    train = "".join(task.vocab[i] for i in task.train_ids)
    for j in range(16):
        xs = "".join(task.vocab[i] for i in b.x[:L[j], j].argmax(axis=1))
        ys = "".join(task.vocab[i] for i in b.target[:L[j], j])
        assert xs[1:] == ys[:-1] and (xs + ys[-1]) in train
    assert not b.x[~ok].any()
    ev = task.eval_batches()
    held = sum(int(valid(e.lengths, 20, e.size)[1].sum()) for e in ev)
    assert held == min(len(task.eval_ids) - 1, 20 * task.eval_size)
    assert 0 < task.baseline(ev) < math.log(len(task.vocab)) + 0.5


def test_bad_task_settings(tmp_path, text_file):
    with pytest.raises(TaskError, match="unknown 'nope'"):
        make_task("nope", 10)
    with pytest.raises(TaskError, match="--seq-len"):
        make_task("adding", 0)
    with pytest.raises(TaskError, match="--min-len"):
        make_task("sine", 10, 11)
    with pytest.raises(TaskError, match="--text PATH"):
        make_task("charlm", 10)
    with pytest.raises(TaskError, match="no such file"):
        make_task("charlm", 10, text=str(tmp_path / "missing.txt"))
    with pytest.raises(TaskError, match="only the charlm task"):
        make_task("adding", 10, text=str(text_file))
    with pytest.raises(TaskError, match="characters; --seq-len 5000"):
        make_task("charlm", 5000, text=str(text_file))
