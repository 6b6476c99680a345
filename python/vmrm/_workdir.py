"""WorkDir: one VM's working directory, the type vmrm was made for.

Created atomically as ``<prefix>/vm-<id8>-XXXXXXXX`` (mode 0700), it names
the VM's files, holds an exclusive flock on itself for as long as it lives
(so vmrmd's orphan sweeper spares it), and cleans up idempotently: by
itself when it can, through vmrmd when files of another user (``qemu-vm``)
are inside.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import Optional, Type, Union

from ._native import NativeWorkDir

StrPath = Union[str, "os.PathLike[str]"]


class WorkDir:
    """A VM's working directory. Use ``WorkDir.create(...)``.

    As a context manager (``with`` or ``async with``) it is removed on exit;
    otherwise call ``cleanup()`` or ``await acleanup()``, which may be called
    again after an error and do nothing once the directory is gone.
    """

    __slots__ = ("_custom_overlay", "_native", "vm_id")

    def __init__(
        self, native: NativeWorkDir, vm_id: str, custom_overlay: Optional[Path] = None
    ) -> None:
        self._native = native
        self.vm_id = vm_id
        self._custom_overlay = custom_overlay

    @classmethod
    def create(
        cls,
        prefix: Optional[StrPath] = None,
        vm_id: Optional[str] = None,
        socket: Optional[StrPath] = None,
        *,
        timeout: Optional[float] = None,
        use_helper: bool = False,
        custom_overlay: Optional[StrPath] = None,
    ) -> WorkDir:
        """Create ``<prefix>/vm-<id8>-XXXXXXXX`` with mode 0700 and lock it.

        ``prefix`` defaults to the system temp dir, ``vm_id`` to a random
        id; ``socket`` and ``timeout`` say how cleanup reaches vmrmd.
        ``use_helper=True`` sends cleanup straight to vmrmd (the files will
        belong to another user); otherwise cleanup tries by itself first.
        Raises ValueError when the prefix is so long that a socket path
        inside would pass the 108-byte ``sun_path`` limit.
        """
        vm_id = uuid.uuid4().hex if vm_id is None else vm_id
        native = NativeWorkDir.create(
            vm_id, prefix=prefix, socket=socket, timeout=timeout, use_helper=use_helper
        )
        overlay = None if custom_overlay is None else Path(os.fspath(custom_overlay))
        return cls(native, vm_id, overlay)

    @property
    def path(self) -> Path:
        """The directory itself."""
        return Path(self._native.path)

    @property
    def overlay_image(self) -> Path:
        """The qcow2 overlay: the custom path if one was given, else inside."""
        if self._custom_overlay is not None:
            return self._custom_overlay
        return self.path / "overlay.qcow2"

    @property
    def console_log(self) -> Path:
        return self.path / "console.log"

    @property
    def cmd_socket(self) -> str:
        """Command channel socket (a str, for QEMU arguments)."""
        return str(self.path / "cmd.sock")

    @property
    def event_socket(self) -> str:
        """Event channel socket (a str, for QEMU arguments)."""
        return str(self.path / "event.sock")

    @property
    def qmp_socket(self) -> Path:
        return self.path / "qmp.sock"

    @property
    def gvproxy_socket(self) -> Path:
        return self.path / "gvproxy.sock"

    @property
    def use_helper(self) -> bool:
        """Whether cleanup goes straight to vmrmd."""
        return self._native.use_helper

    @use_helper.setter
    def use_helper(self, value: bool) -> None:
        self._native.use_helper = value

    @property
    def cleaned_up(self) -> bool:
        return self._native.cleaned_up

    def cleanup(self) -> None:
        """Remove the directory and everything in it. Idempotent; after an
        error (``Unavailable``, ``RemovalFailed``, OSError) call it again."""
        self._native.cleanup()

    async def acleanup(self) -> None:
        """``cleanup()`` for asyncio."""
        await self._native.acleanup()

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.cleanup()

    async def __aenter__(self) -> WorkDir:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.acleanup()

    def __repr__(self) -> str:
        return f"vmrm.WorkDir(vm_id={self.vm_id!r}, path={str(self.path)!r})"
