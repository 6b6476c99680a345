"""The exceptions of the vmrm package.

Every failure of a removal is one of these, each with a retry policy:

- ``Denied``: permanent, never retry (``.reason`` is the helper's code).
- ``NotFound``: nothing at that path (raised unless ``missing_ok=True``).
- ``RemovalFailed``: partial; parts remain (``.failures``, ``.stats``).
  Report it; retrying helps only once the cause (a mount, an immutable
  file) is gone.
- ``Unavailable``: transient; the helper is not running, is busy or timed
  out. Retry with backoff.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from ._native import RemovalStats

#: One part of a tree that could not be removed: (relative path, what, errno
#: or None). ``what`` is the operation that failed with the kernel's errno
#: (``open``, ``read_dir``, ``unlink``, ``rmdir``, ``reopen``), or, with errno
#: None, the helper's limit that stopped it (``deadline``, ``depth``,
#: ``moved``, ``kept_growing``, ``no_progress``, ``foreign_owner``,
#: ``mount_point``). The path is "" for the top directory itself.
FailureEntry = Tuple[str, str, Optional[int]]


class VmrmError(Exception):
    """Base of every vmrm error. ``.path`` is the path asked about (None for
    requests about no path, such as ``ping``)."""

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message, path)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message


class Denied(VmrmError):
    """vmrmd refused the request by policy; nothing was touched. Permanent:
    do not retry. ``.reason`` is the protocol's code: ``not_owner``,
    ``outside_prefixes``, ``bad_name``, ``not_directory``, ``mount_point``,
    ``peer_not_allowed``, ``overflow_uid``, or ``bad_request``."""

    def __init__(self, message: str, path: Optional[str], reason: str) -> None:
        super().__init__(message, path)
        self.args = (message, path, reason)
        self.reason = reason


class NotFound(VmrmError):
    """Nothing exists at the path (raised unless ``missing_ok=True``)."""


class RemovalFailed(VmrmError):
    """The removal ran but parts of the tree remain. ``.failures`` lists
    them as (relative path, what, errno or None), at most 64; ``.omitted``
    counts the rest; ``.stats`` says what was removed."""

    def __init__(
        self,
        message: str,
        path: Optional[str],
        failures: List[FailureEntry],
        stats: RemovalStats,
        omitted: int = 0,
    ) -> None:
        super().__init__(message, path)
        self.args = (message, path, failures, stats, omitted)
        self.failures = failures
        self.stats = stats
        self.omitted = omitted


class Unavailable(VmrmError):
    """The helper could not be reached or did not answer: it is not running,
    is busy (its connection cap or the per-uid cap is full), timed out, or
    could not take the request on (shutting down, an internal fault; nothing
    was touched). Transient: retry with backoff. ``.socket`` names the
    socket (None for ``unavailable``) and ``.reason`` is one of
    ``not_running``, ``connect``, ``connection_lost``, ``timeout``,
    ``busy``, ``unavailable``."""

    def __init__(
        self,
        message: str,
        path: Optional[str] = None,
        socket: Optional[str] = None,
        reason: str = "connect",
    ) -> None:
        super().__init__(message, path)
        self.args = (message, path, socket, reason)
        self.socket = socket
        self.reason = reason


__all__ = [
    "Denied",
    "FailureEntry",
    "NotFound",
    "RemovalFailed",
    "Unavailable",
    "VmrmError",
]
