"""gpu_bptt.sass: counting instructions, FMAs and inner loops in `cuobjdump -sass` text."""
from __future__ import annotations

from gpu_bptt import nvrtc, sass
from tests.skips import NVRTC, skip

# cuobjdump -sass layout (each instruction followed by its encoding lines), written by hand:
# an outer loop 0x10..0x60 holding an inner loop 0x20..0x40, and the padding branch to itself.
TEXT = """
	code for sm_80
		Function : _Z1gPf
	.headerflags	@"EF_CUDA_SM80 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM80)"
        /*0000*/                   MOV R1, c[0x0][0x28] ;                        /* 0x00000a0000017a02 */
        /*0010*/                   LDG.E R4, [R2.64] ;                           /* 0x0000000402047981 */
        /*0020*/                   FFMA R5, R4, R4, R5 ;                         /* 0x0000000404057223 */
        /*0030*/                   DFMA R6, R8, R8, R6 ;                         /* 0x0000000808067223 */
        /*0040*/               @P0 BRA 0x20 ;                                    /* 0x0000000000000947 */
        /*0050*/                   HFMA2.MMA R9, -RZ, RZ, 0, 0 ;                 /* 0x00000000ff097435 */
        /*0060*/               @P1 BRA 0x10 ;                                    /* 0x0000000000000947 */
        /*0070*/                   FFMA.FTZ R5, R5, R5, R5 ;                     /* 0x0000000505057223 */
        /*0080*/                   EXIT ;                                        /* 0x000000000000794d */
        /*0090*/                   BRA 0x90;                                     /* 0xfffffff000007947 */
		Function : other
        /*0000*/                   EXIT ;                                        /* 0x000000000000794d */
"""


def test_parse_counts_instructions_fmas_and_inner_loops():
    got = sass.parse(TEXT)
    assert set(got) == {"_Z1gPf", "other"}
    k = got["_Z1gPf"]
    assert (k.instructions, k.fmas) == (10, 3)  # HFMA2.MMA is a move, not an FMA
    # Only the inner loop counts (the outer one holds it); the branch to itself is no loop.
    assert k.loops == [sass.Loop(fmas=2, instructions=3)]
    assert k.main_loop == sass.Loop(fmas=2, instructions=3)
    assert got["other"].loops == [] and got["other"].main_loop is None


def test_compiled_nested_loop():
    reason = sass.unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC or cuobjdump is not available: {reason}")
    src = ("template <class T> __global__ void f(T* x, int n) { T a = x[0];"
           " for (int i = 0; i < n; ++i) { for (int j = 0; j < n; ++j) a = a * x[j] + x[i]; }"
           " x[1] = a; }")
    res = nvrtc.compile_source(src, name_expressions=("f<float>", "f<double>"), arch="sm_80",
                               cubin=True)
    got = sass.kernels(res)
    assert set(got) == {"f<float>", "f<double>"}
    for k in got.values():
        # The j loop is an FMA loop (unrolled by 4 or not); the i loop is not an inner loop.
        assert k.main_loop is not None and k.main_loop.fmas >= 1
        assert k.main_loop.instructions < k.instructions


def test_opcodes_are_counted_with_their_modifiers():
    k = sass.parse(TEXT)["_Z1gPf"]
    assert k.opcodes["FFMA"] == 1 and k.opcodes["FFMA.FTZ"] == 1 and k.opcodes["BRA"] == 3
    assert k.count("FFMA") == 2 and k.count("HFMA2") == 1 and k.count("LDG") == 1
    assert k.count("FFM") == 0  # a prefix counts only whole opcode parts
