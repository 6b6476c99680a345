#!/usr/bin/env python3
"""The Python half of vmrm's benchmark: removes a typical VM workdir the
ways a Python service would, timing each. `vmrm-bench` (bench/src/python.rs)
starts it as the service user and names the directories.

    bench_removal.py worker SOCKET VMRM_BIN

Commands, one per stdin line, each answered with one line of nanoseconds
(or `error ...`):

    async PATH     await AsyncClient.remove(PATH), persistent connection
    client PATH    Client.remove(PATH), persistent connection
    tokio PATH     await vmrm._native.AsyncClient.remove(PATH): the Rust
                   tokio client behind pyo3-async-runtimes, another way
                   AsyncClient could be built, for comparison
    thread PATH    await asyncio.to_thread(Client.remove, PATH): the third way
    cli PATH       await asyncio.create_subprocess_exec("vmrm", "rm", PATH)
    sudo PATH      subprocess.run(["sudo", "-n", "rm", "-rf", PATH])
    quit
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import vmrm
from vmrm import _native


def worker(socket: str, vmrm_bin: str) -> None:
    client = vmrm.Client(socket=socket)
    loop = asyncio.new_event_loop()
    aclient = vmrm.AsyncClient(socket=socket)
    tclient = _native.AsyncClient(socket, None)
    threaded = vmrm.Client(socket=socket)

    async def timed_async(path: str) -> int:
        t = time.perf_counter_ns()
        await aclient.remove(path)
        return time.perf_counter_ns() - t

    async def timed_tokio(path: str) -> int:
        t = time.perf_counter_ns()
        await tclient.remove(path, False)
        return time.perf_counter_ns() - t

    async def timed_cli(path: str) -> int:
        t = time.perf_counter_ns()
        proc = await asyncio.create_subprocess_exec(
            vmrm_bin, "--socket", socket, "rm", path,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            raise RuntimeError(f"vmrm rm exited {proc.returncode}")
        return time.perf_counter_ns() - t

    async def timed_thread(path: str) -> int:
        t = time.perf_counter_ns()
        await asyncio.to_thread(threaded.remove, path)
        return time.perf_counter_ns() - t

    def timed_client(path: str) -> int:
        t = time.perf_counter_ns()
        client.remove(path)
        return time.perf_counter_ns() - t

    def timed_sudo(path: str) -> int:
        t = time.perf_counter_ns()
        subprocess.run(["sudo", "-n", "/usr/bin/rm", "-rf", path],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter_ns() - t

    # Warm both connections (and the async runtime) before any timing.
    client.ping()
    loop.run_until_complete(aclient.ping())

    async def ping_tokio() -> None:
        await tclient.ping()

    loop.run_until_complete(ping_tokio())
    threaded.ping()
    for line in sys.stdin:
        words = line.split()
        try:
            if words == ["quit"]:
                break
            cmd, path = words
            if cmd == "async":
                ns = loop.run_until_complete(timed_async(path))
            elif cmd == "tokio":
                ns = loop.run_until_complete(timed_tokio(path))
            elif cmd == "thread":
                ns = loop.run_until_complete(timed_thread(path))
            elif cmd == "cli":
                ns = loop.run_until_complete(timed_cli(path))
            elif cmd == "client":
                ns = timed_client(path)
            elif cmd == "sudo":
                ns = timed_sudo(path)
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply = f"{ns}\n"
        except Exception as e:  # reported to the orchestrator, which stops
            reply = f"error {line.strip()}: {type(e).__name__}: {e}\n".replace("\n", " ") + "\n"
        sys.stdout.write(reply)
        sys.stdout.flush()
    loop.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "worker":
        sys.exit(__doc__)
    worker(sys.argv[2], sys.argv[3])
