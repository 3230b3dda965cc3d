"""Training a recurrent network on a built-in task (`gpu-bptt train`); the names a user or the
CLI needs are importable from here.

Modules: config (the settings: task defaults, Config, resolve), loop (the model, one batch, the
loop, train), state (what a run's checkpoint holds: save, check against the run, restore),
rundir (the run directory: choosing, creating and holding it), summary (Result, describe, the
loss curve), command (the argparse options and cmd_train).
"""
from .command import add_train_parser, cmd_train
from .config import (CELLS, DEFAULT_LR, DEFAULTS, FIXED, OPTIMIZERS, TASK_DEFAULTS, Config,
                     ConfigError, resolve)
from .loop import NonFiniteLoss, build_model, build_optimizer, evaluate, run_batch, train
from .rundir import default_out
from .summary import SMOOTH, Result, describe

__all__ = ["CELLS", "DEFAULT_LR", "DEFAULTS", "FIXED", "OPTIMIZERS", "SMOOTH", "TASK_DEFAULTS",
           "Config", "ConfigError", "NonFiniteLoss", "Result", "add_train_parser", "build_model",
           "build_optimizer", "cmd_train", "default_out", "describe", "evaluate", "resolve",
           "run_batch", "train"]
