"""Client, errors and bad input against a real vmrmd, as real tenant uids."""

from __future__ import annotations

import os
import stat

import pytest

import vmrm
import tenant
from conftest import QEMU_VM, TENANT_A, TENANT_B, Daemon, DaemonFactory, TenantFactory, World


def test_removes_own_workdir_with_qemu_files_and_a_private_qemu_subdirectory(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    wd = world.workdir(TENANT_A)
    sub = wd / "qemu-private"
    assert stat.S_IMODE(sub.stat().st_mode) == 0o700 and sub.stat().st_uid == QEMU_VM
    a = as_tenant(TENANT_A)
    assert a.apply(tenant.whoami) == (TENANT_A, TENANT_A)
    stats = a.apply(tenant.remove, (str(world.socket), str(wd)))
    assert isinstance(stats, vmrm.RemovalStats)
    assert not wd.exists()
    # overlay, log, 4 sockets, subdir + its file, and the top itself
    assert stats.entries == 9, stats
    assert stats.bytes > 0 and stats.duration > 0


def test_relative_path_is_taken_from_the_cwd(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    wd = world.workdir(TENANT_A)
    os.chmod(world.sticky, 0o1777)
    stats = as_tenant(TENANT_A).apply(tenant.remove_relative, (str(world.socket), str(world.sticky), wd.name))
    assert stats.entries == 9 and not wd.exists()


def test_denied_for_another_tenants_dir_and_traversal_strings_with_nothing_touched(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    theirs = world.workdir(TENANT_B)
    mine = world.workdir(TENANT_A)
    canary = world.canary("vm-canary-file")
    outside_dir = world.outside / "vm-canary"
    outside_dir.mkdir()
    os.chown(outside_dir, TENANT_A, TENANT_A)
    badname = world.workdir(TENANT_A, name="notvm-")
    spaced = world.workdir(TENANT_A, name="vm-has space-")
    link = world.sticky / "vm-link-to-theirs"
    os.symlink(theirs, link)
    os.lchown(link, TENANT_A, TENANT_A)
    s = world.sticky
    cases = {
        str(theirs): "not_owner",
        str(link): "not_directory",
        "/": None,
        "//": None,
        str(s): None,
        f"{theirs}/..": None,
        f"{theirs}/.": None,
        f"{s}/../outside/vm-canary": None,
        str(outside_dir): "outside_prefixes",
        f"{mine}/qemu-private": None,
        str(badname): "bad_name",
        str(spaced): "bad_name",
        f"{mine}/../../outside/vm-canary": None,
        "/etc": None,
    }
    before = {p: sorted(os.listdir(p)) for p in (theirs, mine, outside_dir)}
    results = as_tenant(TENANT_A).apply(tenant.remove_all, (str(world.socket), list(cases)))
    for (path, reason), got in zip(cases.items(), results):
        assert isinstance(got, vmrm.Denied), (path, got)
        assert got.path is not None
        if reason is not None:
            assert got.reason == reason, (path, got.reason, str(got))
        assert str(got), path
    assert {p: sorted(os.listdir(p)) for p in before} == before
    assert badname.exists() and spaced.exists() and os.path.islink(link)
    assert canary.read_text() == "canary vm-canary-file"


def test_not_found_unless_missing_ok(world: World, daemon: Daemon, as_tenant: TenantFactory) -> None:
    gone = str(world.sticky / "vm-00000000-nothere")
    a = as_tenant(TENANT_A)
    with pytest.raises(vmrm.NotFound) as e:
        a.apply(tenant.remove, (str(world.socket), gone))
    assert e.value.path == gone
    stats = a.apply(tenant.remove, (str(world.socket), gone, True))
    assert stats.entries == 0


def test_unavailable_while_stopped_then_the_same_client_succeeds_after_restart(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    first, second = world.workdir(TENANT_A), world.workdir(TENANT_A)
    a = as_tenant(TENANT_A)
    a.apply(tenant.keep_client, (str(world.socket),))
    assert a.apply(tenant.client_call, ("remove", str(first))).entries == 9
    daemon.stop()
    for _ in range(2):
        with pytest.raises(vmrm.Unavailable) as e:
            a.apply(tenant.client_call, ("remove", str(second)))
        assert e.value.socket == str(world.socket)
        assert str(world.socket) in str(e.value)
        assert e.value.reason in ("not_running", "connection_lost")
    assert "not running" in str(e.value) and "VMRM_SOCKET" in str(e.value)
    assert second.exists()
    daemon.start()
    assert a.apply(tenant.client_call, ("remove", str(second))).entries == 9
    assert not second.exists()
    assert "vmrmd" in a.apply(tenant.client_call, ("ping",))


def test_unavailable_when_the_per_uid_connection_cap_is_full(
    world: World, start_daemon: DaemonFactory, as_tenant: TenantFactory
) -> None:
    start_daemon("--max-connections-per-uid", "1")
    err = as_tenant(TENANT_A).apply(tenant.hold_connection_and_open_another, (str(world.socket),))
    assert isinstance(err, vmrm.Unavailable), err
    if err.reason == "connection_lost":
        # The helper writes its refusal and hangs up without reading our
        # hello; a client that does not read the refusal after EPIPE sees
        # only a lost connection (fixed in the client on the ops branch).
        pytest.xfail(f"client does not read the busy refusal after EPIPE: {err}")
    assert err.reason == "busy", err
    assert "busy" in str(err) and "per-uid" in str(err) and str(world.socket) in str(err)


def test_a_socket_that_does_not_exist_is_unavailable(world: World) -> None:
    c = vmrm.Client(socket=world.run / "nothing.sock")
    with pytest.raises(vmrm.Unavailable) as e:
        c.ping()
    assert e.value.reason == "not_running"
    assert str(world.run / "nothing.sock") in str(e.value)


def test_removal_failed_lists_a_bind_mount_and_an_immutable_file(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    wd = world.workdir(TENANT_A)
    src = world.outside / "bind-source"
    src.mkdir()
    (src / "keep").write_text("outside")
    mnt = wd / "mnt"
    mnt.mkdir()
    os.chown(mnt, TENANT_A, TENANT_A)
    world.bind_mount(src, mnt)
    frozen = wd / "frozen.img"
    frozen.write_bytes(b"x")
    os.chown(frozen, QEMU_VM, QEMU_VM)
    world.make_immutable(frozen)
    with pytest.raises(vmrm.RemovalFailed) as e:
        as_tenant(TENANT_A).apply(tenant.remove, (str(world.socket), str(wd)))
    failures = {rel: (op, errno) for rel, op, errno in e.value.failures}
    assert failures.get("mnt", ("",))[0] == "mount_point", e.value.failures
    assert failures.get("frozen.img") == ("unlink", 1), e.value.failures  # EPERM
    assert e.value.path == str(wd)
    assert isinstance(e.value.stats, vmrm.RemovalStats) and e.value.stats.entries >= 6
    assert "frozen.img" in str(e.value) or "mnt" in str(e.value)
    assert (src / "keep").read_text() == "outside"
    assert frozen.exists() and mnt.exists()


def test_bad_input_is_refused_before_anything_is_sent(world: World, daemon: Daemon) -> None:
    c = vmrm.Client(socket=world.socket)
    before = c.stats()["verdicts"]
    for bad in (5, None, 3.5, ["/tmp"]):
        with pytest.raises(TypeError):
            c.remove(bad)  # type: ignore[arg-type]
    for nul in ("/tmp/vm-a\0b", b"/tmp/vm-a\0"):
        with pytest.raises(ValueError):
            c.remove(nul)
    assert c.stats()["verdicts"] == before
    with pytest.raises(ValueError):
        vmrm.Client(socket=world.socket, timeout=0)


def test_stats_and_ping(world: World, daemon: Daemon) -> None:
    c = vmrm.Client(socket=world.socket)
    assert "vmrmd" in c.ping()
    s = c.stats()
    assert set(s["verdicts"]) >= {"removed", "denied", "failed", "not_found"}
    assert s["connections_accepted"] >= 1
    assert set(s["latency_us"]) == {"p50", "p90", "p99", "max"}
