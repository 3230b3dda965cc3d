"""Built libraries are cached by a hash of source, headers and flags, and shared safely."""
import os
import subprocess
import sys

import numpy as np

from gpu_bptt.emulator import RawModule, build, cache_dir

KERNEL = r'''#include "scale.cuh"
extern "C" __global__ void scale(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = times_factor(x[i]);
}
'''


def _sos(d):
    return sorted(f for f in os.listdir(os.path.join(d, "emulator")) if f.endswith(".so"))


def _setup(tmp_path, factor):
    src = tmp_path / "src"
    inc = tmp_path / "inc"
    src.mkdir(exist_ok=True)
    inc.mkdir(exist_ok=True)
    (src / "scale.cu").write_text(KERNEL)
    (src / "scale.cuh").write_text('#include <factor.cuh>\n'
                                   '__device__ inline float times_factor(float v) { return v * FACTOR * OFFSET; }\n')
    (inc / "factor.cuh").write_text(f"#define FACTOR {factor}.0f\n")
    return str(src / "scale.cu"), ("-I", str(inc), "-DOFFSET=2", "--gpu-architecture=sm_90")


def _run(path, options):
    x = np.ones(5, np.float32)
    RawModule(path=path, options=options).get_function("scale")(1, 32, (x, np.int32(5)))
    return x


def test_cache_key_follows_includes_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_BPTT_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == str(tmp_path / "cache" / "emulator")
    path, options = _setup(tmp_path, 3)
    assert _run(path, options)[0] == 6.0
    first = _sos(tmp_path / "cache")
    assert len(first) == 1
    stamp = os.path.getmtime(os.path.join(cache_dir(), first[0]))
    assert _run(path, options)[0] == 6.0  # found in the cache, not rebuilt
    assert _sos(tmp_path / "cache") == first
    assert os.path.getmtime(os.path.join(cache_dir(), first[0])) == stamp
    _setup(tmp_path, 5)  # a header two includes deep changes
    assert _run(path, options)[0] == 10.0
    assert len(_sos(tmp_path / "cache")) == 2
    # other flags, another key (checked without compiling)
    src = open(path).read()
    def key(opts, sanitize=False):
        return build.cached_path(src, display_name=os.path.abspath(path), src_dir=os.path.dirname(path),
                                 options=opts, entries=["scale"], sanitize=sanitize)
    assert os.path.basename(key(options)) in _sos(tmp_path / "cache")
    assert len({key(options), key(options[:2] + ("-DOFFSET=3",)), key(options, True)}) == 3
    assert not [d for d in os.listdir(cache_dir()) if not d.endswith(".so")]  # no leftovers


def test_parallel_processes_share_the_cache(tmp_path):
    path, options = _setup(tmp_path, 7)
    env = dict(os.environ, GPU_BPTT_CACHE_DIR=str(tmp_path / "cache"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import sys, numpy as np; from gpu_bptt.emulator import RawModule; x = np.ones(5, np.float32);"
            f"RawModule(path={path!r}, options={options!r}).get_function('scale')(1, 32, (x, np.int32(5)));"
            "assert x[0] == 14.0, x")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert len(_sos(tmp_path / "cache")) == 1
