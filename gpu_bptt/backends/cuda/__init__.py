"""The cuda backend as a package (docs/architecture.md §2): `backend` (CudaBackend: device facts,
resolve_algo, the recurrence), `rules` (the launch plan as a pure function of the device's facts),
`registry` (one entry per kernel family: files, versions, geometry, constants shared with CUDA),
`launchers` (one function per kernel), `persistent` (the cooperative algorithm's limits),
`kernel_loader` (kernel sources and the one cached loader). CuPy is imported only when the backend
is probed or built."""
from .backend import CudaBackend, cuda_unavailable_reason

__all__ = ["CudaBackend", "cuda_unavailable_reason"]
