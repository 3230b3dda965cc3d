"""Precision modes (docs/architecture.md §1, precision modes): the storage dtypes, TF32 rounding,
and where the numpy reference rounds.

Storage dtype S, one per call: float64 and float32 as always; float32 with TF32 (every operand of a
matrix product rounded as `cvt.rna.tf32.f32` does, products accumulated in float32); bfloat16
(ml_dtypes) and float16, where every array kept between steps or returned is computed in float32
and rounded once on store (round to nearest even), products take S operands and accumulate in
float32, the LSTM's cell state stays float32 and the weight gradients are accumulated in float32
and rounded once.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)
#: the 16-bit storage dtypes: products and elementwise work in float32, rounded on store
HALF = (BFLOAT16, FLOAT16)
#: every storage dtype a call may use (a backend runs those of Backend.dtypes)
STORAGE = (FLOAT32, np.dtype(np.float64), BFLOAT16, FLOAT16)

_EXP = np.uint32(0x7F800000)    # float32's exponent bits: all set for inf and NaN
_HALF_ULP = np.uint32(0x1000)   # half of TF32's last mantissa place (bit 13)
_KEEP = np.uint32(0xFFFFE000)   # sign, exponent and TF32's 10 mantissa bits


def is_half(dtype) -> bool:
    """Whether `dtype` is a 16-bit storage dtype (bfloat16, float16)."""
    return np.dtype(dtype) in HALF


def work_dtype(dtype):
    """The dtype a call's products accumulate in and its elementwise work runs in: float32 for
    a 16-bit storage dtype, else the dtype itself. Also the LSTM cell state's dtype."""
    return FLOAT32 if is_half(dtype) else np.dtype(dtype)


def round_tf32(a, xp=np):
    """A new float32 array: `a` rounded to TF32 as `cvt.rna.tf32.f32` does, to nearest with ties
    away from zero on a 10-bit mantissa (the low 13 bits cleared). On the sign-magnitude bits,
    adding half an ulp and clearing rounds the magnitude half away from zero, and carries into
    the exponent where the mantissa overflows (to inf past TF32's largest). inf and NaN are
    kept as they are (their payload would otherwise change, a NaN even to inf). xp: the array
    module of `a` (numpy, or cupy on the cuda backend)."""
    bits = xp.ascontiguousarray(a, dtype=FLOAT32).view(xp.uint32)
    out = bits + _HALF_ULP
    out &= _KEEP
    xp.copyto(out, bits, where=(bits & _EXP) == _EXP)
    return out.view(FLOAT32)


@dataclass(frozen=True)
class Mode:
    """One call's precision: its storage dtype and whether products take TF32 operands. The
    numpy reference runs on float32 (or float64) work arrays and calls `operand` on what enters
    a product and `store` on what is kept between steps or returned."""

    storage: np.dtype
    tf32: bool = False

    @classmethod
    def of(cls, plan) -> "Mode":
        """The mode of a LaunchPlan (its dtype name and tf32 flag)."""
        dtype = BFLOAT16 if plan.dtype == BFLOAT16.name else np.dtype(plan.dtype)
        return cls(dtype, bool(plan.tf32))

    @property
    def half(self) -> bool:
        return self.storage in HALF

    @property
    def work(self):
        return work_dtype(self.storage)

    def to_work(self, a):
        """`a` in the work dtype (exact: S values are float32 values); None stays None."""
        return None if a is None else a.astype(self.work, copy=False)

    def to_storage(self, a):
        """`a` rounded to the storage dtype (a new array for a 16-bit S); None stays None."""
        return None if a is None else a.astype(self.storage, copy=False)

    def operand(self, a):
        """`a` as it enters a matrix product: TF32-rounded (a new array) in TF32 mode; else `a`
        (16-bit values are already S values)."""
        return round_tf32(a) if self.tf32 and a is not None else a

    def store(self, a):
        """Round work array `a` in place to S values (16-bit S; else nothing) and return it."""
        if self.half and a is not None:
            a[...] = a.astype(self.storage)
        return a
