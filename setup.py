"""Package discovery that pyproject.toml alone cannot express: the top-level kernels/ directory
ships as the package `gpu_bptt.kernels` (see package-dir in pyproject.toml), next to every
`gpu_bptt*` package found in the tree. Everything else is configured in pyproject.toml."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["gpu_bptt", "gpu_bptt.*"]) + ["gpu_bptt.kernels"])
