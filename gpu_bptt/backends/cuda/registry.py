"""The kernel registry: one entry per kernel family of kernels/ (docs/architecture.md §4).

Each family gives its file, its entry kernels (`<stem>_<version>`), their template parameters,
whether they are cooperative, their launch geometry and the constants shared with the .cu side.
The loader's name expressions, the launchers' grids and blocks and the persistent algorithm's
limits are all derived from here; tests/cuda/test_registry.py parses the kernel sources and checks
every shared constant, entry name and launch bound against this module.

Adding a kernel version: write it in its .cu file and add one `Version` to its family's table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

#: the element types every family is built for (template parameter T), as C types
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def cdiv(a, b):
    """ceil(a / b) for positive integers."""
    return -(-a // b)


@dataclass(frozen=True)
class Tiled:
    """One block per output tile of `rows` x `cols` (BM x BN), each thread `per_thread`
    (TM, TN) outputs, shared-memory tiles `depth` (BK) deep; block (BN / TN, BM / TM).
    rows_on_x: the tile's rows go on grid.x (the GEMM's M, which may exceed grid.y's limit)."""

    rows: int
    cols: int
    per_thread: tuple = (1, 1)
    depth: Optional[int] = None
    rows_on_x: bool = False

    @property
    def block(self) -> tuple:
        return (self.cols // self.per_thread[1], self.rows // self.per_thread[0], 1)

    def geometry(self, M, N) -> tuple:
        """(grid, block) for an (M, N) output (M rows: the batch B, or the GEMM's M)."""
        across, down = cdiv(N, self.cols), cdiv(M, self.rows)
        grid = (down, across, 1) if self.rows_on_x else (across, down, 1)
        return grid, self.block


@dataclass(frozen=True)
class Flat:
    """One thread per output element of an (M, N) output, `threads` per block."""

    threads: int

    @property
    def block(self) -> tuple:
        return (self.threads, 1, 1)

    def geometry(self, M, N) -> tuple:
        return (cdiv(M * N, self.threads), 1, 1), self.block


@dataclass(frozen=True)
class Cooperative:
    """One cooperative launch of `threads`-thread blocks, one per multiprocessor at most; the
    grid and the shared memory come from the persistent plan (persistent.py)."""

    threads: int

    @property
    def block(self) -> tuple:
        return (self.threads, 1, 1)


@dataclass(frozen=True)
class Version:
    """One kernel version of a family.

    launch: its geometry. bounds: its __launch_bounds__ (threads, min blocks) or None.
    product: "kernel" where the kernel computes the recurrent product, "library" where the GEMM
    library does it before the launch (xp.matmul) and the kernel only the epilogue.
    variant: the integer template argument the entry passes to the shared body (persistent)."""

    launch: object
    bounds: Optional[tuple] = None
    product: str = "kernel"
    variant: Optional[int] = None


@dataclass(frozen=True)
class Family:
    """The kernels of one .cu file: `<stem>_<version><T, *params>` for every version, element
    type T and tuple of `params` (extra template arguments, e.g. the GEMM's transposes)."""

    file: str
    stem: str
    versions: dict
    params: tuple = ((),)
    cooperative: bool = False
    constants: dict = field(default_factory=dict)  # {name: value} shared with the .cu side
    paired: bool = False  # also `<stem>_pair_<version>`: both directions of a layer in one launch
    types: tuple = ()  # the C types T it is built for; () for CTYPES' (float, double)

    def entry(self, version: str, pair: bool = False) -> str:
        if version not in self.versions:
            raise ValueError(f"version: expected one of {tuple(self.versions)}, got {version!r}")
        if pair and not self.paired:
            raise ValueError(f"pair: {self.file} has no pair kernels")
        return f"{self.stem}_pair_{version}" if pair else f"{self.stem}_{version}"

    def entries(self) -> tuple:
        """Every entry kernel's name, pair kernels included."""
        return tuple(self.entry(v, pair) for pair in (False, True)[:1 + self.paired]
                     for v in self.versions)

    def expression(self, version: str, dtype, *params, pair: bool = False) -> str:
        """The name expression of one instance, e.g. `elman_fwd_step_v2<float>`."""
        return template_name(self.entry(version, pair), dtype, *params)

    def name_expressions(self) -> tuple:
        return tuple(self.expression(v, dt, *p, pair=pair)
                     for pair in (False, True)[:1 + self.paired]
                     for v in self.versions for dt in self.types or CTYPES for p in self.params)


def ctype(dtype) -> str:
    """The C type of a float dtype; TypeError for anything else."""
    dt = np.dtype(dtype)
    if dt not in CTYPES:
        raise TypeError(f"dtype: kernels take float32 or float64, got {dt}")
    return CTYPES[dt]


def template_name(fn: str, *params) -> str:
    """`fn<p1, p2>` with bools as true/false and dtypes as C types: the one spelling of a template
    instance, used both for name_expressions and for get_function."""
    def spell(p):
        if isinstance(p, bool):
            return "true" if p else "false"
        if isinstance(p, str):
            return p
        return ctype(p)
    return f"{fn}<{', '.join(spell(p) for p in params)}>"


# -- the step kernels: one launch per t; forward and backward share the versions ------------------
STEP_BK = 16  # `constexpr int BK` of the tiled step kernels (tile depth)
STEP = {
    "v1": Version(Tiled(rows=4, cols=64)),
    "v2": Version(Tiled(rows=32, cols=32, per_thread=(2, 2), depth=STEP_BK), bounds=(256, None)),
    "v3": Version(Tiled(rows=64, cols=64, per_thread=(4, 4), depth=STEP_BK), bounds=(256, 2)),
    "v4": Version(Flat(threads=256), bounds=(256, None), product="library"),
}
STEP_FWD = Family("elman_fwd_step.cu", "elman_fwd_step", STEP, constants={"BK": STEP_BK})
STEP_BWD = Family("elman_bwd_step.cu", "elman_bwd_step", STEP, constants={"BK": STEP_BK})

# -- the persistent kernels: the whole recurrence in one cooperative launch -----------------------
PERSIST_CONSTANTS = {"PERSIST_WARPS": 8, "PERSIST_THREADS": 8 * 32, "PERSIST_BATCH": 8,
                     "PERSIST_GROUP": 8, "PERSIST_OUTS": 8 * 8}
_P = PERSIST_CONSTANTS
_PERSIST_LAUNCH = Cooperative(threads=_P["PERSIST_THREADS"])
PERSIST = {
    "v1": Version(_PERSIST_LAUNCH, bounds=(_P["PERSIST_THREADS"], 1), variant=1),
    "v2": Version(_PERSIST_LAUNCH, bounds=(_P["PERSIST_THREADS"], 1), variant=2),
}
#: elements of T of v2's cross-warp sums after the batch chunk (persistent_common.cuh, red)
PERSIST_REDUCTION = {"v1": 0, "v2": _P["PERSIST_WARPS"] * _P["PERSIST_OUTS"]}
PERSIST_FWD = Family("elman_persistent_fwd.cu", "elman_persistent_fwd", PERSIST, cooperative=True,
                     constants=PERSIST_CONSTANTS, paired=True)
PERSIST_BWD = Family("elman_persistent_bwd.cu", "elman_persistent_bwd", PERSIST, cooperative=True,
                     constants=PERSIST_CONSTANTS, paired=True)

# -- the persistent kernels on the tensor cores (persistent_tc.cuh): 16-bit storage on m16n8k16,
# float32 in TF32 mode on m16n8k8
#: a tensor-core mode's storage dtype -> the kernels' T (C names; float32 only with TF32)
TC_CTYPES = {"bfloat16": "__nv_bfloat16", "float16": "__half", "float32": "float"}
PERSIST_TC_CONSTANTS = {**PERSIST_CONSTANTS, "PTC_BATCH": 16, "PTC_KSTEP": 32, "PTC_PAD": 16,
                        "PTC_RED": _P["PERSIST_WARPS"] * 16 * 8}
PERSIST_TC = {"v1": Version(_PERSIST_LAUNCH, bounds=(_P["PERSIST_THREADS"], 1))}
PERSIST_TC_FWD = Family("elman_persistent_tc_fwd.cu", "elman_persistent_tc_fwd", PERSIST_TC,
                        cooperative=True, constants=PERSIST_TC_CONSTANTS,
                        types=tuple(TC_CTYPES.values()))
PERSIST_TC_BWD = Family("elman_persistent_tc_bwd.cu", "elman_persistent_tc_bwd", PERSIST_TC,
                        cooperative=True, constants=PERSIST_TC_CONSTANTS,
                        types=tuple(TC_CTYPES.values()))

# -- products outside the time loop and the bias gradient -----------------------------------------
GEMM_TILE = Tiled(rows=64, cols=64, per_thread=(4, 4), depth=16, rows_on_x=True)
GEMM = Family("gemm.cu", "gemm", {"v1": Version(GEMM_TILE, bounds=(256, 2))},
              params=((False, False), (True, False), (False, True)),  # (TA, TB): NN, TN, NT
              constants={"BM": GEMM_TILE.rows, "BN": GEMM_TILE.cols, "BK": GEMM_TILE.depth,
                         "TM": GEMM_TILE.per_thread[0], "TN": GEMM_TILE.per_thread[1]})
COLSUM_CONSTANTS = {"COLSUM_COLS": 32, "COLSUM_ROWS": 8}
COLUMN_SUM = Family("column_sum.cu", "column_sum",
                    {"v1": Version(Tiled(rows=COLSUM_CONSTANTS["COLSUM_ROWS"],
                                         cols=COLSUM_CONSTANTS["COLSUM_COLS"]),
                                   bounds=(COLSUM_CONSTANTS["COLSUM_COLS"]
                                           * COLSUM_CONSTANTS["COLSUM_ROWS"], None))},
                    constants=COLSUM_CONSTANTS)

# -- the GRU (G = 3 gates): the step versions and persistent variants above, over three gates ------
#: the forward's v3 holds 3 x 16 accumulators a thread: at 2 blocks per multiprocessor (128
#: registers) float64 spills, so it asks for one
GRU_STEP_FWD_VERSIONS = dict(STEP, v3=Version(STEP["v3"].launch, bounds=(256, 1)))
GRU_STEP_FWD = Family("gru_fwd_step.cu", "gru_fwd_step", GRU_STEP_FWD_VERSIONS,
                      constants={"BK": STEP_BK})
GRU_STEP_BWD = Family("gru_bwd_step.cu", "gru_bwd_step", STEP, constants={"BK": STEP_BK})
GRU_PERSIST_FWD = Family("gru_persistent_fwd.cu", "gru_persistent_fwd", PERSIST,
                         cooperative=True, constants=PERSIST_CONSTANTS)
GRU_PERSIST_BWD = Family("gru_persistent_bwd.cu", "gru_persistent_bwd", PERSIST,
                         cooperative=True, constants=PERSIST_CONSTANTS)
GRU_FAMILIES = (GRU_STEP_FWD, GRU_STEP_BWD, GRU_PERSIST_FWD, GRU_PERSIST_BWD)

# -- the LSTM (G = 4): its own step tiles (4 gates per unit: v3's 64x64 would spill in double) --
LSTM_GATES = 4
#: lstm_bwd_step.cu's modes: no projection; a projection's first launch (dhs) and second (du)
LSTM_BWD_MODES = {"LSTM_BWD_FULL": 0, "LSTM_BWD_DHS": 1, "LSTM_BWD_FROM_DM": 2}
LSTM_STEP = {
    "v1": STEP["v1"],
    "v2": STEP["v2"],
    "v3": Version(Tiled(rows=64, cols=32, per_thread=(4, 2), depth=STEP_BK), bounds=(256, 2)),
    "v4": STEP["v4"],
}
LSTM_STEP_FWD = Family("lstm_fwd_step.cu", "lstm_fwd_step", LSTM_STEP, constants={"BK": STEP_BK})
#: the backward's product has one sum per output (K = 4H), so its v3 keeps Elman's 64x64 tiles
LSTM_STEP_BWD_TABLE = {**LSTM_STEP, "v3": STEP["v3"]}
LSTM_STEP_BWD = Family("lstm_bwd_step.cu", "lstm_bwd_step", LSTM_STEP_BWD_TABLE,
                       constants={"BK": STEP_BK, **LSTM_BWD_MODES})
#: the persistent kernels' template parameter PROJ: without and with a projection
LSTM_PERSIST_PARAMS = ((False,), (True,))
LSTM_PERSIST_FWD = Family("lstm_persistent_fwd.cu", "lstm_persistent_fwd", PERSIST,
                          params=LSTM_PERSIST_PARAMS, cooperative=True,
                          constants=PERSIST_CONSTANTS)
LSTM_PERSIST_BWD = Family("lstm_persistent_bwd.cu", "lstm_persistent_bwd", PERSIST,
                          params=LSTM_PERSIST_PARAMS, cooperative=True,
                          constants=PERSIST_CONSTANTS)


# -- the tensor-core step kernels: the precision modes bfloat16, float16 and TF32 (float32) -------
# (docs/architecture.md §1, precision modes; kernels/tc_step.cuh). One version, tc1, for every
# mode: its own kernel files, T the storage C type (float: TF32 operands).
TC_CONSTANTS = {"TC_BM": 32, "TC_BN": 64, "TC_BK": 32, "TC_NT": 4, "TC_WARPS": 4}
#: a 32 x 64 output tile per block, a warp (block.y) per 16 x 32 quarter
TC_TILE = Tiled(rows=TC_CONSTANTS["TC_BM"], cols=TC_CONSTANTS["TC_BN"], per_thread=(8, 2),
                depth=TC_CONSTANTS["TC_BK"])
TC_STEP = {"tc1": Version(TC_TILE, bounds=(32 * TC_CONSTANTS["TC_WARPS"], None))}
TC_STEP_FWD = Family("elman_fwd_step_tc.cu", "elman_fwd_step", TC_STEP, constants=TC_CONSTANTS,
                     types=tuple(TC_CTYPES.values()))
TC_STEP_BWD = Family("elman_bwd_step_tc.cu", "elman_bwd_step", TC_STEP, constants=TC_CONSTANTS,
                     types=tuple(TC_CTYPES.values()))
TC_GRU_STEP_FWD = Family("gru_fwd_step_tc.cu", "gru_fwd_step", TC_STEP, constants=TC_CONSTANTS,
                         types=tuple(TC_CTYPES.values()))
TC_GRU_STEP_BWD = Family("gru_bwd_step_tc.cu", "gru_bwd_step", TC_STEP, constants=TC_CONSTANTS,
                         types=tuple(TC_CTYPES.values()))
#: cell -> (forward, backward) tensor-core step families; a cell not here refuses those modes
TC_CELLS = {"elman": (TC_STEP_FWD, TC_STEP_BWD), "gru": (TC_GRU_STEP_FWD, TC_GRU_STEP_BWD)}
TC_FAMILIES = (TC_STEP_FWD, TC_STEP_BWD, TC_GRU_STEP_FWD, TC_GRU_STEP_BWD)


def tc_ctype(dtype, tf32=False):
    """The tensor-core kernels' T for a mode (storage dtype name, tf32), or None where the mode
    is a plain float32/float64 one."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name == "float32":
        return TC_CTYPES[name] if tf32 else None
    return TC_CTYPES.get(name)


@dataclass(frozen=True)
class Cell:
    """A recurrent cell's kernels: its G gates, step versions (shared by forward and backward)
    and the four families, in launch order (forward, backward)."""

    gates: int
    step: dict
    step_fwd: Family
    step_bwd: Family
    persist_fwd: Family
    persist_bwd: Family
    proj_param: bool = False  # the persistent kernels take PROJ (a projection) as a template bool

    def persist_params(self, P) -> tuple:
        """The persistent kernels' template arguments after T, for proj_size P."""
        return (bool(P),) if self.proj_param else ()


CELLS = {"elman": Cell(1, STEP, STEP_FWD, STEP_BWD, PERSIST_FWD, PERSIST_BWD)}
CELLS["lstm"] = Cell(LSTM_GATES, LSTM_STEP, LSTM_STEP_FWD, LSTM_STEP_BWD, LSTM_PERSIST_FWD,
                     LSTM_PERSIST_BWD, proj_param=True)
CELLS["gru"] = Cell(3, STEP, GRU_STEP_FWD, GRU_STEP_BWD, GRU_PERSIST_FWD, GRU_PERSIST_BWD)


def cell(name: str) -> Cell:
    if name not in CELLS:
        raise ValueError(f"cell: expected one of {tuple(CELLS)}, got {name!r}")
    return CELLS[name]


FAMILIES = (STEP_FWD, STEP_BWD, PERSIST_FWD, PERSIST_BWD, GEMM, COLUMN_SUM,
            LSTM_STEP_FWD, LSTM_STEP_BWD, LSTM_PERSIST_FWD, LSTM_PERSIST_BWD) + GRU_FAMILIES \
    + TC_FAMILIES + (PERSIST_TC_FWD, PERSIST_TC_BWD)
BY_FILE = {f.file: f for f in FAMILIES}
#: CUDA's limit on grid.y and grid.z (grid.x: 2^31 - 1)
MAX_GRID_Y = 65535


def family(file: str) -> Family:
    if file not in BY_FILE:
        raise ValueError(f"file: no kernel family for {file!r}")
    return BY_FILE[file]


def step_geometry(version: str, B: int, H: int, table=STEP) -> tuple:
    """(grid, block) of a step kernel version (of `table`: a cell's step versions) for a (B, H)
    step."""
    if version not in table:
        raise ValueError(f"version: expected one of {tuple(table)}, got {version!r}")
    return table[version].launch.geometry(B, H)
