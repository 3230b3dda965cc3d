"""The cuda backend as a package (docs/architecture.md §2): `backend` (CudaBackend, device probing),
`launchers` (step kernels, GEMM, column sums), `persistent` (the cooperative algorithm),
`kernel_loader` (kernel sources and the one cached loader). CuPy is imported only when the backend
is probed or built."""
from .backend import CudaBackend, cuda_unavailable_reason

__all__ = ["CudaBackend", "cuda_unavailable_reason"]
