"""AsyncClient: the asyncio client.

A removal is sent from the event loop's own thread, the loop waits for the
socket to become readable (``add_reader``), and the answer is read and
finished there: the Rust client does the protocol (``Client.send_remove``
/ ``finish_remove``), asyncio does the waiting, and no thread or second
runtime is involved.

A small removal is often answered by the time the send returns (measured
on a 2-core VM: the send of a typical workdir's request took about as long
as vmrmd's removal of it, and the answer was there after two sends in
three). It is then read at once, without the wait and its two turns of the
loop (0.78x the time, measured), as a ``StreamReader`` returns data it
already holds without yielding.

Two alternatives are measured in the same runs (BENCHMARKS.md, section 7):
the Rust tokio client behind pyo3-async-runtimes (``vmrm._native.AsyncClient``,
kept for the benchmark) and the blocking client on a worker thread
(``asyncio.to_thread``) took 1.73x and 1.64x this design's time in the
committed run (1.07-1.30x and 0.93-1.14x before answers were read at
once). This design was kept: no thread per client, and a cancelled await
drops the connection rather than leave a thread to finish it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Optional, TypeVar, Union

from ._errors import Unavailable
from ._native import Client, RemovalStats

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_T = TypeVar("_T")

#: The blocking client's default wait for one answer, in seconds.
_DEFAULT_TIMEOUT = 660.0


class AsyncClient:
    """asyncio client on one persistent connection to vmrmd.

    Share one between the tasks of one event loop: requests go one at a
    time, in order (use several clients for parallel removals). A cancelled
    ``await`` leaves the client usable: the connection it was waiting on is
    dropped (the helper still finishes a removal it started) and the next
    call opens a new one. Its socket defaults to ``$VMRM_SOCKET``, then
    ``vmrm.DEFAULT_SOCKET``.
    """

    __slots__ = (
        "_client", "_executor", "_lock", "_serial", "_timeout",
        "_waiting", "_deadline", "_watchdog", "_watchdog_loop", "__weakref__",
    )

    def __init__(self, socket: Optional[_Path] = None, timeout: Optional[float] = None) -> None:
        self._client = Client(socket, timeout)
        self._timeout = _DEFAULT_TIMEOUT if timeout is None else timeout
        self._executor: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        # Created inside the running loop (Python 3.9 binds a lock to the
        # loop current at its creation).
        self._serial: Optional[asyncio.Lock] = None
        # The answer awaited now, when it is due, and the one timer that
        # enforces that (see _readable).
        self._waiting: Optional[asyncio.Future[None]] = None
        self._deadline = 0.0
        self._watchdog: Optional[asyncio.TimerHandle] = None
        self._watchdog_loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def socket(self) -> Path:
        return self._client.socket

    def _in_order(self) -> asyncio.Lock:
        if self._serial is None:
            self._serial = asyncio.Lock()
        return self._serial

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        """A call that may wait on the helper (connecting, ping, stats), on a
        worker thread so the loop never blocks."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="vmrm")
            pool = self._executor
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def _readable(self, fd: int) -> None:
        """Until `fd` is readable; TimeoutError after the client's timeout.

        The timeout is kept by one watchdog timer per client, not a timer
        per request: scheduling and cancelling one per request cost about
        6 µs of the 40 µs an await adds to the blocking client (measured). The
        watchdog fires at the earliest deadline it was armed for, fails the
        answer awaited then if that one is overdue, re-arms for it if not,
        and stops when nothing is awaited (the next request re-arms it)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._waiting = ready
        self._deadline = loop.time() + self._timeout
        # Armed on another (finished) loop, it would never fire here.
        if self._watchdog is None or self._watchdog_loop is not loop:
            self._watchdog = loop.call_at(self._deadline, _watch, weakref.ref(self))
            self._watchdog_loop = loop
        loop.add_reader(fd, _set_ready, ready)
        try:
            await ready
        finally:
            self._waiting = None
            loop.remove_reader(fd)

    async def remove(self, path: _Path, missing_ok: bool = False) -> RemovalStats:
        """Remove the directory tree at ``path`` (made absolute against the
        cwd). Raises Denied, NotFound (unless ``missing_ok``),
        RemovalFailed or Unavailable; TypeError or ValueError for a bad
        path, before anything is sent."""
        async with self._in_order():
            if self._client._fileno() is None:
                # Connect (and handshake) off the loop's thread.
                await self._blocking(self._client.ping)
            pending = self._client._send_remove(path)
            while True:
                fd = self._client._fileno()
                try:
                    # Often answered already (see the module's docstring):
                    # then read at once, with no turn of the loop.
                    if fd is not None and not self._client._answer_waiting():
                        await self._readable(fd)
                except asyncio.TimeoutError:
                    self._client._abandon()
                    raise Unavailable(
                        f"no answer from vmrmd at {self.socket} within {self._timeout}s; it is "
                        "overloaded or stuck: retry later, or pass a longer timeout=",
                        os.fsdecode(os.fspath(path)), str(self.socket), "timeout",
                    ) from None
                except BaseException:
                    # Cancelled: never leave an answer half-read.
                    self._client._abandon()
                    raise
                stats = self._client._finish_remove(pending, missing_ok)
                if stats is not None:
                    return stats

    async def ping(self) -> str:
        """The helper's name and version."""
        async with self._in_order():
            result: str = await self._blocking(self._client.ping)
            return result

    async def stats(self) -> Dict[str, Any]:
        """The helper's counters since it started."""
        async with self._in_order():
            result: Dict[str, Any] = await self._blocking(self._client.stats)
            return result

    def close(self) -> None:
        """Drop the connection and stop the worker thread."""
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


def _set_ready(ready: "asyncio.Future[None]") -> None:
    if not ready.done():
        ready.set_result(None)


def _watch(ref: "weakref.ReferenceType[AsyncClient]") -> None:
    """The AsyncClient's watchdog (see AsyncClient._readable); holds the
    client weakly, so an abandoned client is not kept alive by its timer."""
    client = ref()
    loop = asyncio.get_running_loop()
    # Gone, or moved on to another loop (which has a watchdog of its own).
    if client is None or client._watchdog_loop is not loop:
        return
    client._watchdog = None
    ready = client._waiting
    if ready is None or ready.done():
        return
    if loop.time() >= client._deadline:
        ready.set_exception(asyncio.TimeoutError())
    else:
        client._watchdog = loop.call_at(client._deadline, _watch, ref)
