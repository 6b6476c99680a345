"""AsyncClient under load and cancellation."""

from __future__ import annotations

import os
import time

import tenant
import pytest

import vmrm
from conftest import TENANT_A, Daemon, TenantFactory, World


def test_128_concurrent_async_removals(world: World, daemon: Daemon, as_tenant: TenantFactory) -> None:
    dirs = [world.workdir(TENANT_A) for _ in range(128)]
    stats = as_tenant(TENANT_A).apply(tenant.gather_removals, (str(world.socket), [str(d) for d in dirs]))
    assert len(stats) == 128
    assert all(s.entries == 9 for s in stats), stats
    assert not any(d.exists() for d in dirs)


def test_a_cancelled_await_leaves_the_client_usable(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    big = world.workdir(TENANT_A, extra_files=3000)
    small = world.workdir(TENANT_A)
    delays = [0.0, 0.0005, 0.002, 0.01]
    out = as_tenant(TENANT_A).apply(
        tenant.cancel_then_use, (str(world.socket), str(big), str(small), delays)
    )
    assert out["cancelled"] == len(delays) + 1
    assert out["small"].entries == 9
    assert "vmrmd" in out["pong"]
    # The helper finished the removal whose callers stopped waiting (in a
    # sticky prefix it empties the tree; removing the empty top was the
    # cancelled caller's part, so the top may remain).
    assert not small.exists()
    deadline = time.monotonic() + 30
    while big.exists() and os.listdir(big):
        assert time.monotonic() < deadline, "the cancelled removal never finished"
        time.sleep(0.05)


def test_a_long_removal_leaves_the_loop_serving_other_tasks(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    """An answer already there is read at once; one still to come is
    awaited, and the loop serves other tasks meanwhile."""
    big = world.workdir(TENANT_A, extra_files=20000)
    out = as_tenant(TENANT_A).apply(tenant.ticks_during_removal, (str(world.socket), str(big)))
    assert out["stats"].entries == 20000 + 9
    assert out["took"] > 0.02, out
    # Blocked for the removal, the loop would turn about once; turning, at
    # least once every 10 ms of it even on a loaded machine.
    assert out["ticks"] >= max(2, out["took"] * 100), out
    assert not big.exists()


def test_an_answer_later_than_the_timeout_is_unavailable_and_the_client_usable(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    """The client's one timer (re-armed, not one per request) still times
    out a removal that takes longer than the timeout, after the client sat
    idle past it; the next removal on the client is served."""
    big = world.workdir(TENANT_A, extra_files=20000)
    smalls = [world.workdir(TENANT_A) for _ in range(2)]
    out = as_tenant(TENANT_A).apply(
        tenant.time_out_then_use, (str(world.socket), str(big), [str(d) for d in smalls], 0.01)
    )
    assert out["first"].entries == 9
    assert out["reason"] == "timeout", out
    assert out["waited"] < 5, out
    assert out["last"].entries == 9
    assert not any(d.exists() for d in smalls)


def test_async_client_is_unavailable_while_stopped_then_succeeds_after_restart(
    world: World, daemon: Daemon, as_tenant: TenantFactory
) -> None:
    first, second = world.workdir(TENANT_A), world.workdir(TENANT_A)
    a = as_tenant(TENANT_A)
    a.apply(tenant.keep_async_client, (str(world.socket),))
    assert a.apply(tenant.aclient_call, ("remove", str(first))).entries == 9
    daemon.stop()
    for _ in range(2):
        with pytest.raises(vmrm.Unavailable) as e:
            a.apply(tenant.aclient_call, ("remove", str(second)))
        assert str(world.socket) in str(e.value)
    assert second.exists()
    daemon.start()
    assert a.apply(tenant.aclient_call, ("remove", str(second))).entries == 9
    assert "vmrmd" in a.apply(tenant.aclient_call, ("ping",))
    with pytest.raises(vmrm.NotFound):
        a.apply(tenant.aclient_call, ("remove", str(second)))
