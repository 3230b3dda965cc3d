"""The kernel registry against the kernel sources: every constant the launches depend on
(`#define`, literal `constexpr int`, literal template arguments, `__launch_bounds__`), every entry
kernel and its template parameters, and the launch geometry the header comments state, parsed
from kernels/ and compared with gpu_bptt.backends.cuda.registry. No compiler or device needed."""
from __future__ import annotations

import re

import numpy as np
import pytest

from gpu_bptt import activations
from gpu_bptt.backends.cuda import kernel_loader as kl
from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.cuda import registry, rules
from gpu_bptt.backends.cuda.launchers import Launchers
from cuda_helpers import Recorder

DEFINE = re.compile(r"^\s*#define\s+(\w+)\s+(.+?)\s*(?://.*)?$", re.M)
CONSTEXPR = re.compile(r"\bconstexpr\s+int\s+([^;]+);")
ENTRY = re.compile(r"template\s*<([^>]*)>\s*__global__\s+void\s+"
                   r"(?:__launch_bounds__\(([^)]*)\)\s*)?(\w+)\s*\(")
INT_EXPR = re.compile(r"[\d\s()+\-*/]+")


def evaluate(expr, known):
    """The integer value of a constant expression over integers and `known` names."""
    text = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: str(known[m.group(0)]), expr)
    assert INT_EXPR.fullmatch(text), f"not an integer expression: {expr!r}"
    return int(eval(text.replace("/", "//")))  # digits and operators only (checked above)


def constants(source):
    """{name: value} of every #define and every literal-valued constexpr int in `source`."""
    found = {}
    for name, expr in DEFINE.findall(source):
        found[name] = evaluate(expr, found)
    for decls in CONSTEXPR.findall(source):
        for decl in decls.split(","):
            name, _, value = (s.strip() for s in decl.partition("="))
            if re.fullmatch(r"\d+", value):  # derived ones (BN / TN, sizeof ...) follow from these
                assert found.get(name, int(value)) == int(value), f"{name} has two values"
                found[name] = int(value)
    return found


def entries(source):
    """{entry name: (template parameters, launch bounds or None, body)} of every __global__."""
    out = {}
    for m in ENTRY.finditer(source):
        start = source.index("{", m.end())
        depth, i = 0, start
        while True:
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            if depth == 0:
                break
            i += 1
        params = tuple(p.strip() for p in m.group(1).split(","))
        out[m.group(3)] = (params, m.group(2), source[start:i + 1])
    return out


def shared_constants(family):
    """What the registry says the family's source defines: its constants and the activation codes
    (gpu_bptt.activations, whose one home is there) where the source has them."""
    want = dict(family.constants)
    if "#define ACT_" in kl.kernel_source(family.file):
        want.update({f"ACT_{k.upper()}": v for k, v in activations.ACTIVATION_CODES.items()})
    return want


@pytest.mark.parametrize("family", registry.FAMILIES, ids=lambda f: f.file)
def test_every_shared_constant_matches_the_registry(family):
    """All of them: a constant in the source the registry does not know fails, as does a
    registry constant the source lacks or defines with another value."""
    assert constants(kl.kernel_source(family.file)) == shared_constants(family)


def test_every_kernel_file_has_one_family():
    assert sorted(registry.BY_FILE) == kl.kernel_files()
    assert len(registry.BY_FILE) == len(registry.FAMILIES)


@pytest.mark.parametrize("family", registry.FAMILIES, ids=lambda f: f.file)
def test_entries_template_parameters_and_launch_bounds(family):
    source = kl.kernel_source(family.file)
    found = entries(source)
    assert sorted(found) == sorted(family.entries())
    known = constants(source)
    extra = family.params[0]
    for version, spec in family.versions.items():
        for name in (family.entry(version, pair) for pair in (False, True)[:1 + family.paired]):
            params, bounds, body = found[name]
            assert params[0] == "typename T" and len(params) == 1 + len(extra), params
            for p, value in zip(params[1:], extra):
                assert p.split()[0] == type(value).__name__, (p, value)  # bool TA <-> True/False
            got = None if bounds is None else tuple(evaluate(b, known) for b in bounds.split(","))
            want = None if spec.bounds is None else tuple(b for b in spec.bounds if b is not None)
            assert got == want, f"{name}: __launch_bounds__{got}, registry {want}"
        threads = int(np.prod(spec.launch.block))
        assert spec.bounds is None or threads == spec.bounds[0], (version, spec.launch.block)
        assert threads <= 1024


@pytest.mark.parametrize("family", [registry.STEP_FWD, registry.STEP_BWD, registry.GRU_STEP_FWD,
                                    registry.GRU_STEP_BWD], ids=lambda f: f.file)
def test_step_tiles_are_the_registry_tiles(family):
    """The literal template arguments of each tiled step kernel: the shared-memory tile
    TileSmem<BM, BN, BK> and the tile helper's <T, BM, BN, TM, TN>."""
    found = entries(kl.kernel_source(family.file))
    for version, spec in family.versions.items():
        body = found[family.entry(version)][2]
        tile = spec.launch
        if not isinstance(tile, registry.Tiled) or tile.depth is None:
            assert "TileSmem" not in body, version
            continue
        smem = {tuple(map(int, m))
                for m in re.findall(r"TileSmem<(\d+), (\d+), (\d+)(?:, \d+)?>", body)}
        assert smem == {(tile.rows, tile.cols, tile.depth)}, (version, smem)
        calls = re.findall(r"\w+<T, (\d+), (\d+), (\d+), (\d+)>\(", body)
        assert [tuple(map(int, c)) for c in calls] == [(tile.rows, tile.cols) + tile.per_thread]
        assert family.constants["BK"] == tile.depth


def test_gemm_tile_is_the_registry_tile():
    tile = registry.GEMM.versions["v1"].launch
    known = constants(kl.kernel_source("gemm.cu"))
    assert (known["BM"], known["BN"], known["BK"], (known["TM"], known["TN"])) == (
        tile.rows, tile.cols, tile.depth, tile.per_thread)


@pytest.mark.parametrize("family", [registry.PERSIST_FWD, registry.PERSIST_BWD,
                                    registry.GRU_PERSIST_FWD, registry.GRU_PERSIST_BWD],
                         ids=lambda f: f.file)
def test_persistent_versions_and_reduction(family):
    """Each version's entry runs the shared body with its variant, and the registry's reduction
    area is v2's red (PERSIST_WARPS x PERSIST_OUTS elements), none for v1."""
    found = entries(kl.kernel_source(family.file))
    for version, spec in family.versions.items():
        for pair in (False, True) if family.paired else (False,):  # and the pair kernel
            body = found[family.entry(version, pair)][2]
            variants = re.findall(r"persist_\w+<(\d+)>\(", body)
            assert variants == [str(spec.variant)], (version, pair, variants)
        assert spec.launch.block == (registry.PERSIST_CONSTANTS["PERSIST_THREADS"], 1, 1)
    c = registry.PERSIST_CONSTANTS
    assert registry.PERSIST_REDUCTION == {"v1": 0, "v2": c["PERSIST_WARPS"] * c["PERSIST_OUTS"]}
    assert (P.THREADS, P.BATCH_CHUNK) == (c["PERSIST_THREADS"], c["PERSIST_BATCH"])


def _header(file):
    return kl.read_kernel(file).split("\n\n")[0]


@pytest.mark.parametrize("family", [registry.STEP_FWD, registry.STEP_BWD, registry.GRU_STEP_FWD,
                                    registry.GRU_STEP_BWD], ids=lambda f: f.file)
def test_step_headers_state_the_registry_geometry(family):
    head = _header(family.file)
    for version, spec in family.versions.items():
        tile = spec.launch
        if isinstance(tile, registry.Tiled):
            m = re.search(rf"{version}: grid \(ceil\(H/(\d+)\), ceil\(B/(\d+)\)\), block "
                          rf"\((\d+), (\d+)\)", head)
            assert m, f"{family.file}: no launch line for {version}"
            assert tuple(map(int, m.groups())) == (tile.cols, tile.rows) + tile.block[:2]
        else:
            m = re.search(rf"{version}: .*?grid \(ceil\(B\*H/(\d+)\)\), block \((\d+)\)", head,
                          re.S)
            assert m and tuple(map(int, m.groups())) == (tile.threads, tile.threads), version


def test_other_headers_state_the_registry_geometry():
    gemm = registry.GEMM.versions["v1"].launch
    assert (f"grid (ceil(M/{gemm.rows}), ceil(N/{gemm.cols})), block "
            f"({gemm.block[0]}, {gemm.block[1]})") in _header("gemm.cu")
    cs = registry.COLUMN_SUM.versions["v1"].launch
    assert (f"grid (ceil(N/{cs.cols}), ceil(R/rows_per_chunk)), block "
            f"({cs.block[0]}, {cs.block[1]})") in _header("column_sum.cu")
    c = registry.PERSIST_CONSTANTS
    for family in (registry.PERSIST_FWD, registry.PERSIST_BWD):
        head = " ".join(_header(family.file).replace("//", " ").split())
        assert f"block ({c['PERSIST_THREADS']}, 1, 1)" in head
        assert (f"(cols + min(B, {c['PERSIST_BATCH']})) * H * sizeof(T) bytes, plus "
                f"{c['PERSIST_WARPS']} * {c['PERSIST_OUTS']} * sizeof(T) for v2") in head


def test_name_expressions_come_from_the_registry():
    assert kl.name_expressions("gemm.cu") == tuple(
        f"gemm_v1<{t}, {a}, {b}>" for t in ("float", "double")
        for a, b in (("false", "false"), ("true", "false"), ("false", "true")))
    assert kl.name_expressions("elman_persistent_bwd.cu") == (
        "elman_persistent_bwd_v1<float>", "elman_persistent_bwd_v1<double>",
        "elman_persistent_bwd_v2<float>", "elman_persistent_bwd_v2<double>",
        "elman_persistent_bwd_pair_v1<float>", "elman_persistent_bwd_pair_v1<double>",
        "elman_persistent_bwd_pair_v2<float>", "elman_persistent_bwd_pair_v2<double>")
    with pytest.raises(ValueError, match="pair: gemm.cu has no pair kernels"):
        registry.GEMM.entry("v1", pair=True)
    with pytest.raises(ValueError, match="version: expected one of"):
        registry.STEP_FWD.entry("v9")


@pytest.mark.parametrize("version", list(registry.STEP))
def test_step_launches_are_the_plans(version):
    """What the step launchers launch is the plan's grid and block, forward and backward."""
    T, B, H = 2, 70, 100
    plan = rules.launch_plan("step", B, H, np.float32, limits=P.DeviceLimits(4, 48 * 1024),
                             kernels=(), step=version, persist="v2")
    rec = Recorder()
    k = Launchers(np, rec)
    z = np.zeros((T, B, H), np.float32)
    lengths = np.full(B, T, np.int32)
    k.fwd_stepper(z, z[0], np.zeros((H, H), np.float32), lengths, "tanh", plan.version)(1)
    k.bwd_stepper(z.copy(), None, None, z, np.zeros((H, H), np.float32), lengths, "tanh",
                  plan.version)(0)
    assert [(g, b) for _, g, b in rec.launches] == [(plan.grid, plan.block)] * 2
    assert [n for n, _, _ in rec.launches] == [f"elman_fwd_step_{version}<float>",
                                              f"elman_bwd_step_{version}<float>"]
