"""Fixtures for the vmrm Python tests: a real vmrmd started as an
unprivileged uid holding only CAP_DAC_OVERRIDE (as systemd would start it),
a per-test world of prefixes under /tmp, and tenants that are real uids in
forked worker processes. Runs as root, like the Rust end-to-end tests."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

import vmrm
import tenant

HELPER = 61000
TENANT_A = 61001
TENANT_B = 61002
QEMU_VM = 61003

REPO = Path(__file__).resolve().parents[2]


def vmrmd_binary() -> Path:
    env = os.environ.get("VMRMD_BIN")
    if env:
        return Path(env)
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "vmrmd"
        if p.exists():
            return p
    pytest.fail("no vmrmd binary: run `cargo build --release -p vmrmd` (or set VMRMD_BIN)")


def _vmrmd_flags() -> str:
    out = subprocess.run(
        [str(vmrmd_binary()), "--help"], capture_output=True, text=True, timeout=30
    )
    return out.stdout


class World:
    """One test's directories: a sticky prefix (mode 1777, like /tmp), a
    plain root-owned prefix (0755), a directory outside both, and the
    socket path."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="vmrm-py-", dir="/tmp")).resolve()
        self.base.chmod(0o755)
        self.sticky = self.base / "sticky"
        self.plain = self.base / "plain"
        self.outside = self.base / "outside"
        self.run = self.base / "run"
        for d, mode in ((self.sticky, 0o1777), (self.plain, 0o755), (self.outside, 0o755), (self.run, 0o755)):
            d.mkdir()
            d.chmod(mode)
        self.socket = self.run / "vmrmd.sock"
        self.mounts: List[Path] = []
        self.immutable: List[Path] = []

    def workdir(self, owner: int, name: Optional[str] = None, prefix: Optional[Path] = None,
                qemu_files: bool = True, extra_files: int = 0) -> Path:
        """A typical VM workdir owned by `owner` (mode 0700): the overlay,
        console log and four sockets owned by qemu-vm, and a 0700 qemu-vm
        subdirectory with a file in it."""
        prefix = prefix or self.sticky
        d = Path(tempfile.mkdtemp(prefix=name or "vm-0123abcd-", dir=prefix))
        d.chmod(0o700)
        if qemu_files:
            (d / "overlay.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 65532)
            (d / "console.log").write_text("boot\n" * 100)
            for s in ("cmd.sock", "event.sock", "qmp.sock", "gvproxy.sock"):
                tenant.make_socket(d / s)
            sub = d / "qemu-private"
            sub.mkdir(mode=0o700)
            (sub / "state").write_bytes(b"x" * 4096)
            for p in [*d.iterdir(), *sub.iterdir()]:
                os.lchown(p, QEMU_VM, QEMU_VM)
        for i in range(extra_files):
            (d / f"f{i}").write_bytes(b"")
            os.lchown(d / f"f{i}", owner, owner)
        os.chown(d, owner, owner)
        return d

    def canary(self, name: str) -> Path:
        p = self.outside / name
        p.write_text("canary " + name)
        return p

    def bind_mount(self, source: Path, target: Path) -> None:
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
        self.mounts.append(target)

    def make_immutable(self, path: Path) -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        self.immutable.append(path)

    def destroy(self) -> None:
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
        for p in self.immutable:
            subprocess.run(["chattr", "-i", str(p)], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


class Daemon:
    """vmrmd as a service manager would start it: uid HELPER, ambient
    CAP_DAC_OVERRIDE and nothing else, the full self-sandbox."""

    def __init__(self, world: World, args: List[str]) -> None:
        self.world = world
        self.args = args
        self.log = world.base / "vmrmd.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def command(self) -> List[str]:
        h = HELPER
        words = [
            "setpriv", f"--reuid={h}", f"--regid={h}", "--clear-groups",
            "--inh-caps=-all,+dac_override", "--ambient-caps=-all,+dac_override",
            "--bounding-set=-all,+dac_override", "--",
            str(vmrmd_binary()),
            "--config", "/dev/null",
            "--socket", str(self.world.socket),
            "--user", str(h),
            "--sandbox", "required",
            "--prefix", str(self.world.sticky),
            "--prefix", str(self.world.plain),
        ]
        # The runner uid (qemu-vm) whose subdirectories vmrmd may enter,
        # where this vmrmd knows the flag.
        if "--runner-user" in _vmrmd_flags():
            words += ["--runner-user", str(QEMU_VM)]
        return words + self.args

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        probe = vmrm.Client(socket=self.world.socket, timeout=5)
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"vmrmd exited during start-up:\n{self.log.read_text()}")
            try:
                probe.ping()
                return
            except vmrm.Unavailable:
                if time.monotonic() > deadline:
                    pytest.fail(f"vmrmd not ready:\n{self.log.read_text()}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def world() -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (real uids, setpriv, bind mounts)")
    w = World()
    try:
        yield w
    finally:
        w.destroy()


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def start_daemon(world: World) -> Iterator[DaemonFactory]:
    """Start vmrmd with extra arguments; stopped at the end of the test."""
    started: List[Daemon] = []

    def start(*args: str) -> Daemon:
        d = Daemon(world, list(args))
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def daemon(start_daemon: DaemonFactory) -> Daemon:
    return start_daemon()


TenantFactory = Callable[[int], multiprocessing.pool.Pool]


@pytest.fixture
def as_tenant() -> Iterator[TenantFactory]:
    """A one-process pool running as `uid` (forked, then setresuid): tenant
    code, with its state (clients, workdirs) kept across calls."""
    pools: List[multiprocessing.pool.Pool] = []
    ctx = multiprocessing.get_context("fork")

    def make(uid: int) -> multiprocessing.pool.Pool:
        pool = ctx.Pool(1, initializer=tenant.become, initargs=(uid,))
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        p.terminate()
        p.join()
