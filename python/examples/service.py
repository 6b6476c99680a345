"""How an asyncio VM service cleans up its workdirs through vmrm instead of
`sudo rm -rf`: retry Unavailable with backoff, never retry Denied, report
RemovalFailed. Type-checked with `mypy --strict` by the test suite."""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

import vmrm

log = logging.getLogger("vm-service")


async def remove_workdir(
    client: vmrm.AsyncClient, path: str, attempts: int = 5
) -> Optional[vmrm.RemovalStats]:
    """Remove one VM's workdir; None when it could not be removed."""
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return await client.remove(path, missing_ok=True)
        except vmrm.Unavailable as e:  # transient: helper down, busy, slow
            log.warning("vmrmd unavailable (%s, try %d): %s", e.reason, attempt, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        except vmrm.Denied as e:  # permanent: a bug or an attack, never retry
            log.error("vmrmd refused %s (%s): %s", e.path, e.reason, e)
            return None
        except vmrm.RemovalFailed as e:  # partial: report what remains
            for rel, op, errno in e.failures:
                log.error("left in %s: %r (%s, errno %s)", e.path, rel, op, errno)
            return None
    return None


async def run_vm(prefix: Optional[str] = None) -> None:
    async with vmrm.WorkDir.create(prefix=prefix, use_helper=True) as wd:
        wd.console_log.write_text("booting\n")
        qemu_args = ["-qmp", f"unix:{wd.qmp_socket},server=on,wait=off", "-chardev",
                     f"socket,id=cmd,path={wd.cmd_socket},server=on,wait=off"]
        log.info("would start qemu with %s", qemu_args)
    # Leaving the block removed the directory (through vmrmd: qemu-vm's
    # files are inside), or raised one of the exceptions above.


async def main() -> None:
    client = vmrm.AsyncClient()
    print(await client.ping())
    stats = await remove_workdir(client, "/tmp/vm-3f2a9c1e-k2j4x8q0")
    if stats is not None:
        print(f"removed {stats.entries} entries, {stats.bytes} bytes in {stats.duration:.4f}s")
    with vmrm.Client() as blocking:  # the same, without asyncio
        print(blocking.stats()["verdicts"])


if __name__ == "__main__":
    asyncio.run(main())
