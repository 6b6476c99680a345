"""vmrm: remove per-VM working directories through the vmrmd helper instead
of ``sudo rm -rf``.

- ``Client`` (blocking) and ``AsyncClient`` (asyncio) keep one persistent
  connection to vmrmd; ``remove(path, missing_ok=False)`` returns
  ``RemovalStats`` or raises ``Denied``, ``NotFound``, ``RemovalFailed`` or
  ``Unavailable`` (all ``VmrmError``).
- ``WorkDir`` creates ``vm-<id8>-XXXXXXXX`` (mode 0700), names its files,
  keeps the orphan sweeper off it with a flock, and cleans it up.

The protocol itself is implemented once, in Rust (the ``vmrm`` crate); this
package wraps it.
"""

from ._errors import (
    Denied,
    FailureEntry,
    NotFound,
    RemovalFailed,
    Unavailable,
    VmrmError,
)
from ._async import AsyncClient
from ._native import DEFAULT_SOCKET, SUN_PATH_MAX, Client, RemovalStats
from ._workdir import WorkDir

__all__ = [
    "DEFAULT_SOCKET",
    "SUN_PATH_MAX",
    "AsyncClient",
    "Client",
    "Denied",
    "FailureEntry",
    "NotFound",
    "RemovalFailed",
    "RemovalStats",
    "Unavailable",
    "VmrmError",
    "WorkDir",
]
