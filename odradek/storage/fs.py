"""The filesystem seam under the log: the handful of file operations it uses.

``OSFileSystem`` is the real thing (handles are file descriptors).
``MemoryFileSystem`` keeps files in memory (memory mode: nothing touches the
disk). ``FakeFileSystem`` is that plus what tests need: it remembers what was
fsynced, and can simulate a crash -- a process kill (page cache survives) or a
power loss (only fsynced bytes survive), either one optionally tearing the last
write -- and inject ``OSError`` into chosen operations, so recovery is testable
in-process.
It also records which thread ran each fsync, and can run a test's hook (a
delay, a barrier) before chosen operations, so races and blocking calls on the
event loop are testable too; ``evict`` takes files out of a simulated page
cache, for ``pread_nowait`` (a read that would wait for the disk returns None:
``odradek.storage.coldreads``).

Invariants: ``open`` is read-write, creates, and never truncates; writes are
positional (``pwrite`` writes everything or raises), never O_APPEND (Linux
ignores pwrite's offset on O_APPEND files); ``rename`` atomically replaces the
target. Handles may be used from several threads (each call is independent).
"""

from __future__ import annotations

import abc
import errno
import os
import posixpath
import sys
import threading
from collections import Counter


class FileSystem(abc.ABC):
    """What the log needs from a filesystem. Paths are strings."""

    @abc.abstractmethod
    def open(self, path: str, create: bool = True):
        """A read-write handle; the file is created if missing, unless
        ``create`` is False (then FileNotFoundError)."""

    @abc.abstractmethod
    def close(self, handle) -> None: ...

    @abc.abstractmethod
    def pwrite(self, handle, data, pos: int) -> int:
        """Write all of ``data`` at ``pos``; return its length."""

    @abc.abstractmethod
    def pread(self, handle, size: int, pos: int) -> bytes:
        """Up to ``size`` bytes at ``pos`` (fewer only at end of file)."""

    def pread_nowait(self, handle, size: int, pos: int) -> list | None:
        """``pread`` from the page cache only: the bytes, as a list of
        bytes-like pieces in order (fewer bytes only at the end of the file),
        or None when some of them would have to be read from the disk first.
        This default never waits (files in memory)."""
        return [self.pread(handle, size, pos)]

    def read_ahead(self, handle, pos: int, size: int) -> None:
        """Read ``size`` bytes at ``pos`` into the page cache, returning once
        they are there (blocking: not on the event loop). Files in memory: nothing."""

    @abc.abstractmethod
    def truncate(self, handle, size: int) -> None: ...

    @abc.abstractmethod
    def fsync(self, handle) -> None: ...

    @abc.abstractmethod
    def fsize(self, handle) -> int: ...

    @abc.abstractmethod
    def size(self, path: str) -> int: ...

    @abc.abstractmethod
    def rename(self, src: str, dst: str) -> None: ...

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abc.abstractmethod
    def remove(self, path: str) -> None: ...

    @abc.abstractmethod
    def rmdir(self, path: str) -> None: ...

    @abc.abstractmethod
    def mkdir(self, path: str) -> None:
        """Create ``path`` and its parents; fine if it exists."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    def isdir(self, path: str) -> bool: ...

    @abc.abstractmethod
    def fsync_dir(self, path: str) -> None: ...

    # -- helpers built on the primitives ---------------------------------
    def read_file(self, path: str) -> bytes | None:
        """Whole content of ``path``, or None if it does not exist."""
        if not self.exists(path):
            return None
        h = self.open(path)
        try:
            return self.pread(h, self.fsize(h), 0)
        finally:
            self.close(h)

    def write_atomic(self, path: str, data: bytes, durable: bool = True) -> None:
        """Replace ``path`` with ``data``: write ``path.tmp``, fsync, rename, fsync the dir."""
        tmp = path + ".tmp"
        h = self.open(tmp)
        try:
            self.truncate(h, 0)
            self.pwrite(h, data, 0)
            if durable:
                self.fsync(h)
        finally:
            self.close(h)
        self.rename(tmp, path)
        if durable:
            self.fsync_dir(os.path.dirname(path) or ".")

    def remove_if_exists(self, path: str) -> None:
        try:
            self.remove(path)
        except FileNotFoundError:
            pass


class OSFileSystem(FileSystem):
    """The operating system's filesystem; handles are file descriptors."""

    _FLAGS = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)

    def open(self, path, create=True):
        return os.open(path, self._FLAGS | (os.O_CREAT if create else 0), 0o644)

    def close(self, handle):
        os.close(handle)

    def pwrite(self, handle, data, pos):
        total = len(data)
        n = os.pwrite(handle, data, pos)
        if n == total:
            return total
        with memoryview(data) as view:
            while n < total:
                w = os.pwrite(handle, view[n:], pos + n)
                if w <= 0:
                    raise OSError(errno.EIO, "short write")
                n += w
        return total

    def pread(self, handle, size, pos):
        data = os.pread(handle, size, pos)
        if len(data) == size or not data:
            return data
        parts = [data]
        got = len(data)
        while got < size:
            more = os.pread(handle, size - got, pos + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    _nowait = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None

    _PIECE = 1 << 20  # RWF_NOWAIT reads go to buffers of at most 1 MiB (fresh larger ones fault)

    def pread_nowait(self, handle, size, pos):
        """What the page cache holds, or None. With ``cachestat`` (Linux
        6.5+), which says whether every page of the range is cached without
        reading any, a plain ``pread`` of cached pages (a page still being
        read in by another thread would be waited for). Without it,
        ``preadv2(RWF_NOWAIT)``, which starts reading what is missing before
        saying so. Where neither is possible, a plain ``pread`` (which may
        wait)."""
        if self._nowait is None or size <= 0:
            return [self.pread(handle, size, pos)]
        if _cachestat.available is not False:
            cached = _cachestat(handle, pos, size)
            if cached is False:
                end = os.fstat(handle).st_size  # pages past the end are never cached
                if end >= pos + size or (end > pos and _cachestat(handle, pos, end - pos) is False):
                    return None
                cached = True
            if cached:
                return [self.pread(handle, size, pos)]
        piece = self._PIECE
        bufs = [bytearray(min(piece, size - i)) for i in range(0, size, piece)]
        try:
            n = os.preadv(handle, bufs, pos, self._nowait)
            if n < size and n and os.preadv(handle, [bytearray(1)], pos + n, self._nowait):
                return None  # short, yet more is there: not all cached after all
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            OSFileSystem._nowait = None
            return [self.pread(handle, size, pos)]
        if n < size:  # the end of the file
            keep, left = [], n
            for b in bufs:
                if left <= 0:
                    break
                if len(b) > left:
                    del b[left:]
                keep.append(b)
                left -= len(b)
            return keep
        return bufs

    _ADVISE = 2 << 20  # POSIX_FADV_WILLNEED in steps the kernel does not cut short

    def read_ahead(self, handle, pos, size):
        """``POSIX_FADV_WILLNEED`` over the range, which reads it in without
        leaving readahead marks (a later read reaching one would start the
        kernel's next readahead, in that reader's thread), then reads it
        through, waiting for every page."""
        if size <= 0:
            return
        if hasattr(os, "posix_fadvise"):
            step = self._ADVISE
            for at in range(pos, pos + size, step):
                os.posix_fadvise(handle, at, min(step, pos + size - at), os.POSIX_FADV_WILLNEED)
        scratch = bytearray(min(size, self._PIECE))
        with memoryview(scratch) as view:
            while size > 0:
                n = os.preadv(handle, [view[:min(size, len(view))]], pos)
                if n <= 0:
                    return
                pos += n
                size -= n

    def truncate(self, handle, size):
        os.ftruncate(handle, size)

    def fsync(self, handle):
        os.fsync(handle)

    def fsize(self, handle):
        return os.fstat(handle).st_size

    def size(self, path):
        return os.stat(path).st_size

    def rename(self, src, dst):
        os.replace(src, dst)

    def listdir(self, path):
        return os.listdir(path)

    def remove(self, path):
        os.remove(path)

    def rmdir(self, path):
        os.rmdir(path)

    def mkdir(self, path):
        os.makedirs(path, exist_ok=True)

    def exists(self, path):
        return os.path.exists(path)

    def isdir(self, path):
        return os.path.isdir(path)

    def fsync_dir(self, path):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _CacheStat:
    """``cachestat(2)`` (Linux 6.5+, through ctypes): whether every page of a
    range of a file is in the page cache, found without reading any.
    ``available`` is False where it cannot be called (then the caller falls
    back), True once a call succeeded, None before the first call."""

    PAGE = 4096
    NUMBERS = {"x86_64": 451, "aarch64": 451, "arm64": 451}  # the generic syscall table's

    def __init__(self):
        self.available = None
        self._call = None

    def _load(self) -> None:
        self.available = False
        if not sys.platform.startswith("linux") or os.uname().machine not in self.NUMBERS:
            return
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
        except (ImportError, OSError, AttributeError):
            return
        syscall.restype = ctypes.c_long
        number = self.NUMBERS[os.uname().machine]
        u64 = ctypes.c_uint64
        self.PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

        class Range(ctypes.Structure):
            _fields_ = [("off", u64), ("len", u64)]

        class Stat(ctypes.Structure):
            _fields_ = [(n, u64) for n in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted",
                                           "nr_recently_evicted")]

        def call(fd, pos, size):
            rng, st = Range(pos, size), Stat()
            if syscall(number, fd, ctypes.byref(rng), ctypes.byref(st), 0) != 0:
                raise OSError(ctypes.get_errno(), "cachestat")
            return st.nr_cache

        self._call = call
        self.available = None  # known after the first call

    def __call__(self, fd: int, pos: int, size: int):
        """True or False (all of ``[pos, pos + size)`` cached or not), or None
        where cachestat cannot tell (and ``available`` becomes False)."""
        if self._call is None:
            if self.available is False:
                return None
            self._load()
            if self._call is None:
                return None
        try:
            cached = self._call(fd, pos, size)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
                raise  # EBADF and the like: as a pread of that handle would
            self.available, self._call = False, None  # not here (a seccomp filter: EPERM)
            return None
        self.available = True
        page = self.PAGE
        return cached >= (pos + size - 1) // page - pos // page + 1


_cachestat = _CacheStat()


class _Inode:
    __slots__ = ("data", "synced")

    def __init__(self):
        self.data = bytearray()  # what the page cache holds
        self.synced = b""  # what the disk holds (as of the last fsync; FakeFileSystem only)


class MemoryFileSystem(FileSystem):
    """Files in memory, for memory mode: a directory tree of byte arrays, no more.

    ``fsync`` and ``fsync_dir`` do nothing (there is nothing to make durable);
    a removed file's bytes are freed once its last handle is closed. Every call
    holds one lock, so handles may be used from several threads.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._files: dict[str, _Inode] = {}  # path -> file
        self._dirs: dict[str, set[str]] = {"/": set()}  # path -> names of its entries
        self._handles: dict[int, tuple[str, _Inode]] = {}  # handle -> (path opened, file)
        self._next_handle = 1

    @staticmethod
    def _norm(path: str) -> str:
        return posixpath.normpath(posixpath.join("/", str(path)))

    def _handle(self, handle) -> tuple[str, _Inode]:
        try:
            return self._handles[handle]
        except KeyError:
            raise OSError(errno.EBADF, "bad (or crashed) file handle") from None

    def _entries(self, path: str) -> set[str]:
        """The names in ``path``'s parent directory, which must exist."""
        parent = posixpath.dirname(path)
        try:
            return self._dirs[parent]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such directory", parent) from None

    def open(self, path, create=True):
        path = self._norm(path)
        with self._lock:
            inode = self._files.get(path)
            if inode is None:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, "no such file", path)
                if path in self._dirs:
                    raise IsADirectoryError(errno.EISDIR, "is a directory", path)
                self._entries(path).add(posixpath.basename(path))
                inode = self._files[path] = _Inode()
            h = self._next_handle
            self._next_handle += 1
            self._handles[h] = (path, inode)
            return h

    def close(self, handle):
        with self._lock:
            self._handle(handle)
            del self._handles[handle]

    def pwrite(self, handle, data, pos):
        n = len(data)
        with self._lock:
            buf = self._handle(handle)[1].data
            end = len(buf)
            if pos == end:
                buf += data
            else:
                if pos > end:
                    buf.extend(bytes(pos - end))
                buf[pos : pos + n] = data
            return n

    def pread(self, handle, size, pos):
        with self._lock:
            buf = self._handle(handle)[1].data
            if size <= 4096:
                return bytes(buf[pos : pos + size])
            with memoryview(buf) as view:  # one copy, not two
                return bytes(view[pos : pos + size])

    def truncate(self, handle, size):
        with self._lock:
            buf = self._handle(handle)[1].data
            if size < len(buf):
                del buf[size:]
            else:
                buf.extend(bytes(size - len(buf)))

    def fsync(self, handle):
        with self._lock:
            self._handle(handle)

    def fsize(self, handle):
        with self._lock:
            return len(self._handle(handle)[1].data)

    def size(self, path):
        path = self._norm(path)
        with self._lock:
            if path not in self._files:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            return len(self._files[path].data)

    def rename(self, src, dst):
        src, dst = self._norm(src), self._norm(dst)
        with self._lock:
            if src not in self._files:
                raise FileNotFoundError(errno.ENOENT, "no such file", src)
            entries = self._entries(dst)
            self._entries(src).discard(posixpath.basename(src))
            entries.add(posixpath.basename(dst))
            self._files[dst] = self._files.pop(src)

    def listdir(self, path):
        path = self._norm(path)
        with self._lock:
            if path not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, "no such directory", path)
            return sorted(self._dirs[path])

    def remove(self, path):
        path = self._norm(path)
        with self._lock:
            if path not in self._files:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            del self._files[path]
            self._entries(path).discard(posixpath.basename(path))

    def rmdir(self, path):
        path = self._norm(path)
        with self._lock:
            if path not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, "no such directory", path)
            if self._dirs[path]:
                raise OSError(errno.ENOTEMPTY, "directory not empty", path)
            del self._dirs[path]
            self._entries(path).discard(posixpath.basename(path))

    def mkdir(self, path):
        path = self._norm(path)
        with self._lock:
            missing = []
            while path not in self._dirs:
                if path in self._files:
                    raise FileExistsError(errno.EEXIST, "is a file", path)
                missing.append(path)
                path = posixpath.dirname(path)
            for path in reversed(missing):
                self._dirs[path] = set()
                self._dirs[posixpath.dirname(path)].add(posixpath.basename(path))

    def exists(self, path):
        path = self._norm(path)
        with self._lock:
            return path in self._files or path in self._dirs

    def isdir(self, path):
        with self._lock:
            return self._norm(path) in self._dirs

    def fsync_dir(self, path):
        pass


class FakeFileSystem(MemoryFileSystem):
    """In-memory files with fsync tracking, crash simulation and fault injection.

    Namespace operations (create, rename, remove) are durable at once; file
    *contents* are durable only up to the last ``fsync`` of that file. A file
    never fsynced survives a power loss empty (as on ext4 with delayed
    allocation). ``counts`` tallies calls per operation, ``bytes_read`` the
    bytes returned by ``pread``, and ``syncs`` lists every ``fsync`` and
    ``fsync_dir`` (so every durable ``write_atomic``) as (operation, path,
    ``threading.get_ident()`` of the calling thread).
    """

    def __init__(self):
        super().__init__()
        self._lock = threading.RLock()  # held around MemoryFileSystem's calls, which take it too
        self._last_write = None  # (inode, pos, data, old_len, old_bytes)
        self._faults: list[list] = []
        self._hooks: list[list] = []
        self.counts: Counter = Counter()
        self.bytes_read = 0
        self.syncs: list[tuple[str, str, int]] = []
        self._cold: set = set()  # files (inodes) not in the "page cache": see evict
        self.cold_preads: list[tuple[str, int]] = []  # (path, thread) of preads that waited for one

    # -- test controls ----------------------------------------------------
    def crash(self, mode: str = "power", torn: int | None = None) -> None:
        """Simulate a crash; every open handle becomes invalid.

        ``mode="kill"``: a process kill -- everything written survives.
        ``mode="power"``: every file reverts to its fsynced content.
        ``torn=k``: the last write before the crash keeps only its first ``k``
        bytes (with "power", those ``k`` bytes land on top of the fsynced content).
        """
        if mode not in ("kill", "power"):
            raise ValueError(mode)
        with self._lock:
            lw = self._last_write
            if torn is not None and lw is not None and mode == "kill":
                inode, pos, data, old_len, old_bytes = lw
                keep = pos + min(torn, len(data))
                end = pos + len(data)
                if keep < old_len:  # restore what the torn part overwrote
                    stop = min(end, old_len)
                    inode.data[keep:stop] = old_bytes[keep - pos : stop - pos]
                if end > old_len:
                    del inode.data[max(keep, old_len) : end]
            if mode == "power":
                for inode in self._files.values():
                    inode.data = bytearray(inode.synced)
                if torn is not None and lw is not None:
                    inode, pos, data, _, _ = lw
                    if pos <= len(inode.data):
                        inode.data[pos : pos + torn] = data[:torn]
            self._handles.clear()
            self._last_write = None

    def fail(self, op: str, error: OSError | None = None, path_contains: str | None = None,
             after: int = 0, times: int = 1) -> None:
        """Make the next matching ``op`` calls (after skipping ``after`` of them) raise."""
        if error is None:
            error = OSError(errno.EIO, f"injected {op} failure")
        with self._lock:
            self._faults.append([op, path_contains, error, after, times])

    def on(self, op: str, action, path_contains: str | None = None, after: int = 0,
           times: int = 1) -> None:
        """Call ``action(op, path)`` before the next matching ``op`` calls (after
        skipping ``after`` of them; ``times=-1``: every one). It runs outside the
        filesystem's lock, so it may block (sleep, wait on an Event) while other
        threads go on using the filesystem. An exception it raises fails the call."""
        with self._lock:
            self._hooks.append([op, path_contains, action, after, times])

    def evict(self, path_contains: str | None = None) -> None:
        """Drop the matching files (all: None) from the simulated page cache:
        ``pread_nowait`` of them returns None until a ``pread`` (which waits,
        and is listed in ``cold_preads`` with its thread) reads one in again
        (the whole file)."""
        with self._lock:
            for path, inode in self._files.items():
                if path_contains is None or path_contains in path:
                    self._cold.add(inode)

    def corrupt(self, path: str, pos: int, data: bytes) -> None:
        """Overwrite bytes in place, in the page cache and on 'disk' alike (bit rot)."""
        with self._lock:
            inode = self._files[self._norm(path)]
            inode.data[pos : pos + len(data)] = data
            synced = bytearray(inode.synced)
            if pos < len(synced):
                synced[pos : pos + len(data)] = data[: max(0, len(synced) - pos)]
                inode.synced = bytes(synced)

    def contents(self, path: str) -> bytes:
        with self._lock:
            return bytes(self._files[self._norm(path)].data)

    def synced_contents(self, path: str) -> bytes:
        with self._lock:
            return self._files[self._norm(path)].synced

    # -- internals --------------------------------------------------------
    def _check(self, op: str, path: str) -> None:
        self.counts[op] += 1
        for f in self._faults:
            if f[0] == op and (f[1] is None or f[1] in path):
                if f[3] > 0:
                    f[3] -= 1
                    continue
                f[4] -= 1
                if f[4] <= 0:
                    self._faults.remove(f)
                raise f[2]

    def _before(self, op: str, path: str | None) -> None:
        """Run the hooks (``on``) matching this call, outside the lock."""
        if not self._hooks:
            return
        actions = []
        with self._lock:
            for h in list(self._hooks):
                if h[0] == op and (h[1] is None or (path is not None and h[1] in path)):
                    if h[3] > 0:
                        h[3] -= 1
                        continue
                    if h[4] > 0:
                        h[4] -= 1
                        if h[4] == 0:
                            self._hooks.remove(h)
                    actions.append(h[2])
        for action in actions:
            action(op, path)

    def _handle_path(self, handle) -> str | None:
        entry = self._handles.get(handle)
        return entry[0] if entry is not None else None

    # -- FileSystem: MemoryFileSystem's, plus faults, hooks and bookkeeping --
    def open(self, path, create=True):
        path = self._norm(path)
        self._before("open", path)
        with self._lock:
            self._check("open", path)
            return super().open(path, create)

    def pwrite(self, handle, data, pos):
        self._before("pwrite", self._handle_path(handle))
        with self._lock:
            path, inode = self._handle(handle)
            self._check("pwrite", path)
            data = bytes(data)
            old_len = len(inode.data)
            old_bytes = bytes(inode.data[pos : pos + len(data)])
            super().pwrite(handle, data, pos)
            self._last_write = (inode, pos, data, old_len, old_bytes)
            return len(data)

    def pread(self, handle, size, pos):
        self._before("pread", self._handle_path(handle))
        with self._lock:
            path, inode = self._handle(handle)
            self._check("pread", path)
            if inode in self._cold:
                self._cold.discard(inode)
                self.cold_preads.append((path, threading.get_ident()))
            out = super().pread(handle, size, pos)
            self.bytes_read += len(out)
            return out

    def pread_nowait(self, handle, size, pos):
        with self._lock:
            path, inode = self._handle(handle)
            self._check("pread_nowait", path)
            if inode in self._cold:
                return None
            out = MemoryFileSystem.pread(self, handle, size, pos)
            self.bytes_read += len(out)
            return [out]

    def truncate(self, handle, size):
        self._before("truncate", self._handle_path(handle))
        with self._lock:
            path, inode = self._handle(handle)
            self._check("truncate", path)
            super().truncate(handle, size)
            if self._last_write is not None and self._last_write[0] is inode:
                self._last_write = None

    def fsync(self, handle):
        self._before("fsync", self._handle_path(handle))
        with self._lock:
            path, inode = self._handle(handle)
            self.syncs.append(("fsync", path, threading.get_ident()))
            self._check("fsync", path)
            inode.synced = bytes(inode.data)

    def rename(self, src, dst):
        src = self._norm(src)
        self._before("rename", src)
        with self._lock:
            self._check("rename", src)
            super().rename(src, dst)

    def remove(self, path):
        path = self._norm(path)
        self._before("remove", path)
        with self._lock:
            self._check("remove", path)
            super().remove(path)

    def fsync_dir(self, path):
        path = self._norm(path)
        self._before("fsync_dir", path)
        with self._lock:
            self.syncs.append(("fsync_dir", path, threading.get_ident()))
            self._check("fsync_dir", path)
