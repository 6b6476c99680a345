"""AsyncClient: the asyncio client.

Each call runs the blocking Rust client (GIL released while it waits) on
this client's own worker thread. That was measured against the alternative,
the Rust tokio client behind pyo3-async-runtimes (``vmrm._native.AsyncClient``,
kept for the benchmark): with one connection serving requests in order,
both pay two thread wake-ups per call, and the thread was as fast or faster
(BENCHMARKS.md, section 5), with simpler cancellation.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ._native import Client, RemovalStats

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class AsyncClient:
    """asyncio client on one persistent connection to vmrmd.

    Share one between tasks: requests go one at a time, in order (use
    several clients for parallel removals). A cancelled ``await`` stops
    waiting, never the exchange half-way: a request already sent is
    answered and read, so the client stays usable. Its socket defaults to
    ``$VMRM_SOCKET``, then ``vmrm.DEFAULT_SOCKET``.
    """

    __slots__ = ("_client", "_executor", "_lock")

    def __init__(self, socket: Optional[_Path] = None, timeout: Optional[float] = None) -> None:
        self._client = Client(socket, timeout)
        self._executor: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                # One thread: requests on one connection are serial anyway,
                # and a thread that stays warm wakes faster.
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="vmrm")
            return self._executor

    @property
    def socket(self) -> Path:
        return self._client.socket

    async def remove(self, path: _Path, missing_ok: bool = False) -> RemovalStats:
        """Remove the directory tree at ``path`` (made absolute against the
        cwd). Raises Denied, NotFound (unless ``missing_ok``),
        RemovalFailed or Unavailable; TypeError or ValueError for a bad
        path, before anything is sent."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._client.remove, path, missing_ok)

    async def ping(self) -> str:
        """The helper's name and version."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._client.ping)

    async def stats(self) -> Dict[str, Any]:
        """The helper's counters since it started."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._client.stats)

    def close(self) -> None:
        """Drop the connection and stop the worker thread (after the calls
        already queued)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
        self._client.close()

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"vmrm.AsyncClient(socket={str(self.socket)!r})"
