"""Dask clusters for work made of many independent fits (SBC, sensitivity grids).

A local cluster by default (one process per worker, one thread each, so each fit runs on
one core), or an existing cluster given by its scheduler address, so the same command runs
on a laptop or on many machines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from distributed import Client, LocalCluster


def default_workers() -> int:
    """Number of local workers when none is asked for: one per core."""
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    processes: bool = True,
) -> Iterator[Client]:
    """A Dask client, closed (with its local cluster) on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``tcp://10.0.0.5:8786``). When given, ``workers``
        and ``processes`` are ignored: the cluster's own workers run the fits.
    workers : int, optional
        Number of workers of the local cluster (default: one per core).
    processes : bool
        Local workers as separate processes (default). ``False`` runs them as threads of
        this process (for tests and debugging; the fits then share one Python process).

    Yields
    ------
    distributed.Client
    """
    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    n_workers = workers or default_workers()
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=":0",  # any free port: several runs may share a machine
        silence_logs=40,  # logging.ERROR
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
