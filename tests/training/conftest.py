"""Training tests run BLAS on one thread: under ``pytest -n 2`` two workers with two OpenBLAS
threads each would oversubscribe the two cores (OpenBLAS threads spin while waiting)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it run as configured
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
