"""Tenant-side code for the tests: runs in a forked worker that switched
to a tenant's uid (tenant.become), keeping clients and workdirs in STATE
between calls so that one object can outlive a helper restart."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import vmrm

STATE: Dict[str, Any] = {}


def become(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def make_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


def whoami() -> Tuple[int, int]:
    return os.getuid(), os.geteuid()


def remove(sock: str, path: Any, missing_ok: bool = False) -> vmrm.RemovalStats:
    return vmrm.Client(socket=sock).remove(path, missing_ok=missing_ok)


def remove_all(sock: str, paths: List[str]) -> List[Any]:
    """Each path with one client: its stats or the exception raised."""
    c = vmrm.Client(socket=sock)
    out: List[Any] = []
    for p in paths:
        try:
            out.append(c.remove(p))
        except vmrm.VmrmError as e:
            out.append(e)
    return out


def remove_relative(sock: str, cwd: str, name: str) -> vmrm.RemovalStats:
    os.chdir(cwd)
    return vmrm.Client(socket=sock).remove(name)


def keep_client(sock: str, key: str = "client") -> None:
    STATE[key] = vmrm.Client(socket=sock)


def client_call(method: str, *args: Any, key: str = "client") -> Any:
    return getattr(STATE[key], method)(*args)


def hold_connection_and_open_another(sock: str) -> Optional[vmrm.VmrmError]:
    """Hold one connection, then try a second: its error, or None."""
    first = vmrm.Client(socket=sock)
    first.ping()
    STATE["held"] = first
    try:
        vmrm.Client(socket=sock).ping()
    except vmrm.VmrmError as e:
        return e
    return None


def gather_removals(sock: str, paths: List[str]) -> List[vmrm.RemovalStats]:
    async def main() -> List[vmrm.RemovalStats]:
        c = vmrm.AsyncClient(socket=sock)
        return list(await asyncio.gather(*(c.remove(p) for p in paths)))

    return asyncio.run(main())


def cancel_then_use(sock: str, big: str, small: str, delays: List[float]) -> Dict[str, Any]:
    """Cancel a removal of `big` mid-flight (after each delay), then use the
    same client for `small` and a ping."""

    async def main() -> Dict[str, Any]:
        c = vmrm.AsyncClient(socket=sock)
        cancelled = 0
        for d in delays:
            t = asyncio.ensure_future(c.remove(big, missing_ok=True))
            await asyncio.sleep(d)
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                cancelled += 1
        # wait_for's timeout cancels too.
        try:
            await asyncio.wait_for(c.remove(big, missing_ok=True), timeout=0)
        except asyncio.TimeoutError:
            cancelled += 1
        stats = await c.remove(small)
        pong = await c.ping()
        return {"cancelled": cancelled, "small": stats, "pong": pong}

    return asyncio.run(main())


def time_out_then_use(sock: str, big: str, smalls: List[str], timeout: float) -> Dict[str, Any]:
    """With a client whose timeout is `timeout`: remove a small workdir, idle
    past the timeout (the client's timer finds nothing awaited), time out on
    `big`, then remove another small one on the same client."""

    async def main() -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        c = vmrm.AsyncClient(socket=sock, timeout=timeout)
        first = await c.remove(smalls[0])
        await asyncio.sleep(timeout * 3)
        started = loop.time()
        reason = None
        try:
            await c.remove(big)
        except vmrm.Unavailable as e:
            reason = e.reason
        waited = loop.time() - started
        last = await c.remove(smalls[1])
        return {"first": first, "reason": reason, "waited": waited, "last": last}

    return asyncio.run(main())


def ticks_during_removal(sock: str, path: str) -> Dict[str, Any]:
    """Remove `path` with an AsyncClient while another task counts the
    loop's turns (one each millisecond at most)."""

    async def main() -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        c = vmrm.AsyncClient(socket=sock)
        await c.ping()
        ticks = 0
        removing = True

        async def ticker() -> None:
            nonlocal ticks
            while removing:
                await asyncio.sleep(0.001)
                ticks += 1

        counting = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        started = loop.time()
        stats = await c.remove(path)
        took = loop.time() - started
        removing = False
        await counting
        return {"stats": stats, "ticks": ticks, "took": took}

    return asyncio.run(main())


def create_workdir(prefix: str, sock: str, key: str = "wd", **kw: Any) -> str:
    wd = vmrm.WorkDir.create(prefix=prefix, socket=sock, **kw)
    STATE[key] = wd
    return str(wd.path)


def workdir_call(method: str, key: str = "wd") -> Any:
    return getattr(STATE[key], method)()


def workdir_acleanup(key: str = "wd") -> None:
    asyncio.run(STATE[key].acleanup())


def async_with_workdir(prefix: str, sock: str) -> Tuple[str, bool]:
    async def main() -> Tuple[str, bool]:
        async with vmrm.WorkDir.create(prefix=prefix, socket=sock) as wd:
            wd.console_log.write_text("hello")
            path = wd.path
        return str(path), path.exists()

    return asyncio.run(main())


def hold_workdir(uid: int, prefix: str, sock: str, conn: Any) -> None:
    """As `uid`: create a WorkDir, send its path, and live until killed."""
    become(uid)
    wd = vmrm.WorkDir.create(prefix=prefix, socket=sock)
    (wd.path / "console.log").write_text("running")
    conn.send(str(wd.path))
    while True:
        time.sleep(60)


def keep_async_client(sock: str) -> None:
    """An AsyncClient and the one event loop it is used from."""
    STATE["loop"] = asyncio.new_event_loop()
    STATE["aclient"] = vmrm.AsyncClient(socket=sock)


def aclient_call(method: str, *args: Any) -> Any:
    return STATE["loop"].run_until_complete(getattr(STATE["aclient"], method)(*args))
