"""One BLAS thread per process: the one place that says so, for web processes and training workers alike.

A single image gains nothing from more, and on a small machine several processes' spin-waiting BLAS
threads fight each other (and training) for the cores. OpenBLAS sizes its thread pool when it loads,
so a child process is also given the setting in its environment before its NumPy starts.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

ONE_BLAS_THREAD_ENV = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def use_one_blas_thread() -> None:
    threadpool_limits(limits=1, user_api="blas")
