"""The memory a training run needs, estimated before anything is allocated, and what the machine
has: `gpu-bptt train` refuses a run that cannot fit instead of failing minutes into it.

The estimate counts the arrays the run holds at its peak (float32 values, int64 class targets):
the parameters with their gradients and optimizer state, plus the larger of one training step and
the evaluation. tests/test_train.py compares it with the peak that tracemalloc measures.
"""
from __future__ import annotations

from .cells.memory_plan import available, memory_estimate, size_text  # noqa: F401 (the planner's)
from .nn import CELLS

F32 = 4
OPT_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}   # optimizer arrays per parameter
GATES = {name: getattr(level, "gates", 1) for name, level in CELLS.items()}   # Elman: one
# Arrays of one time step's (B, H) or (B, O) values held at the peak of a training step (counted
# from the numpy backend and the loss objects): Elman's h, du, dh and the reduction's temporary
# (the gated cells' c, gates, input projection and their gradients fitted to the measured peak);
# y, dy, the counted steps' copies and the loss's temporaries. The evaluation runs forward only:
# h and its last state (and the gated cells' gates); y and the loss's temporaries.
PER_H, PER_O = {"elman": 3, "lstm": 12, "gru": 13}, 4
EVAL_PER_H, EVAL_PER_O = {"elman": 2, "lstm": 12, "gru": 13}, 4
EVAL_BATCH = 256


def estimate(cfg, task) -> int:
    """Bytes a run of resolved settings `cfg` on `task` needs at its peak."""
    T, B, I, H, O = cfg.seq_len, cfg.batch, task.input_size, cfg.hidden, task.output_size
    K = cfg.bptt_trunc if 0 < cfg.bptt_trunc < T else T
    cell, G = cfg.cell, GATES[cfg.cell]
    P = G * (I * H + H * H + H * (2 if cell == "gru" else 1)) + H * O + O
    # parameters, gradients, optimizer state; V.T and the update's temporaries (H, G·H) each
    weights = F32 * ((2 + OPT_COPIES[cfg.optimizer]) * P + 3 * G * H * H)
    target = F32 * O if task.loss == "mse" else 2 * 8   # class targets and the tokens they come from

    def data(n):   # inputs and targets of n sequences
        return T * n * (F32 * I + target)

    if cfg.memory == "full":
        train_step = data(B) + K * B * F32 * (PER_H[cell] * H + PER_O * O)
    else:  # recompute (what auto falls back to): the level's own peak, its output h and dh
        level = memory_estimate(cell, K, B, I, H, "float32", memory="recompute").peak
        train_step = data(B) + K * B * F32 * (2 * H + PER_O * O) + level
    n_eval = min(EVAL_BATCH, task.eval_size)
    evaluation = (data(B) + data(task.eval_size)
                  + T * n_eval * F32 * (EVAL_PER_H[cell] * H + EVAL_PER_O * O))
    return weights + max(train_step, evaluation) + task.data_bytes


def shortfall(cfg, task, backend):
    """None when the run fits, else the one-line reason (the estimate and what the machine has)."""
    need = estimate(cfg, task)
    have, what = available(backend)
    if have is None or need <= have:
        return None
    return (f"the run needs about {size_text(need)} of memory (--hidden {cfg.hidden}, --batch "
            f"{cfg.batch}, --seq-len {cfg.seq_len}), more than the {size_text(have)} of {what} "
            "here; choose smaller sizes")
