"""MemFile: an anonymous in-memory file (memfd) that never touches a disk.

Runs anywhere (server loop, fork server, child). Uploads are streamed into a MemFile,
sealed, and handed to a child by file descriptor; outputs come back the same way.
"""
from __future__ import annotations

import fcntl
import mmap
import os

_SEALS_READ_ONLY = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


class MemFile:
    """A growable, sealable in-memory file. Not thread-safe; close() it when done."""

    _fd = -1  # so close() and __del__ hold when memfd_create fails in __init__ (EMFILE)

    def __init__(self, name: str = "sandbox", *, fd: int | None = None) -> None:
        # The name shows only in /proc/*/fd links; it never carries user data.
        self._fd = fd if fd is not None else os.memfd_create(
            name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self._size = os.fstat(self._fd).st_size

    @classmethod
    def fixed_size(cls, size: int, name: str = "sandbox") -> "MemFile":
        """A memfd of `size` bytes (sparse: pages cost memory only once written), sealed
        against growing and shrinking: whoever writes into it, its size is the cap."""
        mem = cls(name)
        try:
            mem.truncate(size)
            fcntl.fcntl(mem.fileno(), fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        except BaseException:
            mem.close()
            raise
        return mem

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, name: str = "sandbox") -> "MemFile":
        mem = cls(name)
        mem.write(data)
        return mem

    @property
    def size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("MemFile is closed")
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data (raises PermissionError once sealed)."""
        view = memoryview(data).cast("B")
        while view:
            written = os.pwrite(self.fileno(), view, self._size)
            self._size += written
            view = view[written:]

    def truncate(self, size: int) -> None:
        """Set the size (sparse: pages cost memory only once written)."""
        os.ftruncate(self.fileno(), size)
        self._size = size

    def seal(self) -> None:
        """Make the content immutable for every holder of the fd (idempotent)."""
        if not self.sealed:
            fcntl.fcntl(self.fileno(), fcntl.F_ADD_SEALS, _SEALS_READ_ONLY)

    @property
    def sealed(self) -> bool:
        return bool(fcntl.fcntl(self.fileno(), fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE)

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        """Exactly `length` bytes from `offset` (default: to the end); short content raises."""
        if length is None:
            length = self._size - offset
        if offset < 0 or length < 0 or offset + length > self._size:
            raise ValueError("read past the end of the MemFile")
        chunks = []
        while length:
            chunk = os.pread(self.fileno(), min(length, 1 << 24), offset)
            if not chunk:
                raise ValueError("MemFile shrank while being read")
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def map_readonly(self) -> mmap.mmap | None:
        """A read-only mapping of the whole content (None when empty: mmap needs a size)."""
        if self._size == 0:
            return None
        return mmap.mmap(self.fileno(), self._size, prot=mmap.PROT_READ)

    def close(self) -> None:
        if self._fd >= 0:                  # the class default -1 when __init__ failed
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "MemFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
