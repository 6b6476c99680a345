"""WorkDir: creation, the flock against the sweeper, idempotent cleanup."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import stat
import time
from pathlib import Path

import pytest

import vmrm
import tenant
from conftest import QEMU_VM, TENANT_A, Daemon, DaemonFactory, TenantFactory, World


def qemu_private_dir(wd: Path) -> None:
    """What QEMU leaves: files the tenant cannot remove by itself."""
    sub = wd / "qemu-private"
    sub.mkdir(mode=0o700)
    (sub / "state").write_bytes(b"x" * 100)
    os.lchown(sub / "state", QEMU_VM, QEMU_VM)
    os.lchown(sub, QEMU_VM, QEMU_VM)
    (wd / "overlay.qcow2").write_bytes(b"QFI\xfb")
    os.lchown(wd / "overlay.qcow2", QEMU_VM, QEMU_VM)


def test_create_names_and_mode(world: World) -> None:
    with vmrm.WorkDir.create(prefix=world.sticky, vm_id="3f2a9c1e-aaaa") as wd:
        assert wd.path.parent == world.sticky
        assert wd.path.name.startswith("vm-3f2a9c1e-") and len(wd.path.name) == 20
        assert stat.S_IMODE(wd.path.stat().st_mode) == 0o700
        assert wd.overlay_image == wd.path / "overlay.qcow2"
        assert wd.console_log == wd.path / "console.log"
        assert wd.cmd_socket == str(wd.path / "cmd.sock")
        assert wd.event_socket == str(wd.path / "event.sock")
        assert wd.qmp_socket == wd.path / "qmp.sock"
        assert wd.gvproxy_socket == wd.path / "gvproxy.sock"
        for s in (wd.cmd_socket, wd.event_socket, wd.qmp_socket, wd.gvproxy_socket):
            assert len(os.fsencode(s)) <= vmrm.SUN_PATH_MAX
        # The flock is held: nobody else (the sweeper) can take it.
        fd = os.open(wd.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        path = wd.path
    assert not path.exists()


def test_a_too_long_prefix_is_refused_with_a_clear_error(world: World) -> None:
    long = world.base / ("p" * 80)
    long.mkdir()
    with pytest.raises(ValueError) as e:
        vmrm.WorkDir.create(prefix=long)
    msg = str(e.value)
    assert "107-byte limit" in msg and "shorter" in msg and str(long) in msg
    assert os.listdir(long) == []


def test_the_sweeper_spares_a_live_workdir_and_sweeps_it_after_sigkill(
    world: World, start_daemon: DaemonFactory
) -> None:
    start_daemon("--sweep-interval", "1", "--sweep-grace", "0")
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    owner = ctx.Process(target=tenant.hold_workdir,
                        args=(TENANT_A, str(world.sticky), str(world.socket), theirs))
    owner.start()
    try:
        assert ours.poll(30), "the owner never created its workdir"
        path = Path(ours.recv())
        time.sleep(3.5)  # three sweeps
        assert (path / "console.log").exists(), "the sweeper took a live workdir"
    finally:
        assert owner.pid is not None
        os.kill(owner.pid, signal.SIGKILL)
        owner.join(10)
    deadline = time.monotonic() + 30
    # In a sticky prefix the sweeper empties the directory (unlinking the
    # top needs CAP_FOWNER); elsewhere it removes it.
    while path.exists() and os.listdir(path):
        assert time.monotonic() < deadline, "never swept"
        time.sleep(0.2)


def test_cleanup_is_idempotent_and_retryable_through_the_helper(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    a = as_tenant(TENANT_A)
    path = Path(a.apply(tenant.create_workdir, (str(world.sticky), str(world.socket))))
    qemu_private_dir(path)
    daemon.stop()
    with pytest.raises(vmrm.Unavailable):
        a.apply(tenant.workdir_call, ("cleanup",))
    assert (path / "qemu-private" / "state").exists()
    daemon.start()
    a.apply(tenant.workdir_call, ("cleanup",))
    assert not path.exists()
    a.apply(tenant.workdir_call, ("cleanup",))
    a.apply(tenant.workdir_acleanup)


def test_async_cleanup_and_async_context_manager(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    a = as_tenant(TENANT_A)
    path = Path(a.apply(tenant.create_workdir, (str(world.sticky), str(world.socket)), {"use_helper": True}))
    qemu_private_dir(path)
    a.apply(tenant.workdir_acleanup)
    assert not path.exists()
    a.apply(tenant.workdir_acleanup)
    p, existed_after = a.apply(tenant.async_with_workdir, (str(world.sticky), str(world.socket)))
    assert not existed_after and not Path(p).exists()


def test_a_forked_child_exiting_leaves_its_parents_workdir(world: World) -> None:
    wd = vmrm.WorkDir.create(prefix=world.sticky)
    pid = os.fork()
    if pid == 0:
        # The child drops its copy as a normal exit would.
        del wd
        import gc

        gc.collect()
        os._exit(0)
    os.waitpid(pid, 0)
    assert wd.path.exists()
    wd.cleanup()
    assert not wd.path.exists()
