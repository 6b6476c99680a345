"""AsyncClient under load and cancellation."""

from __future__ import annotations

import tenant
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
    # The cancelled removal was not cut off: its answer was read, so the
    # connection stayed in step, and the tree is gone.
    assert not big.exists() and not small.exists()
