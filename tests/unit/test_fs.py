"""The in-memory filesystems (odradek.storage.fs): memory mode's and the tests' fake
share one file model, which must behave as OSFileSystem does for what the log uses."""

from __future__ import annotations

import errno
import os

import pytest

from odradek.storage.fs import FakeFileSystem, MemoryFileSystem, OSFileSystem


@pytest.fixture(params=["memory", "fake", "os"])
def fs_root(request, tmp_path):
    if request.param == "os":
        return OSFileSystem(), str(tmp_path)
    return (MemoryFileSystem() if request.param == "memory" else FakeFileSystem()), "/r"


def test_files_and_directories(fs_root):
    fs, root = fs_root
    d = os.path.join(root, "a", "b")
    fs.mkdir(d)
    fs.mkdir(d)  # fine if it exists
    assert fs.isdir(os.path.join(root, "a")) and fs.isdir(d)
    assert fs.listdir(os.path.join(root, "a")) == ["b"]
    with pytest.raises(FileNotFoundError):
        fs.open(os.path.join(root, "nope", "f"))
    h = fs.open(os.path.join(d, "f"))
    assert fs.pwrite(h, b"hello", 0) == 5
    fs.pwrite(h, b"!", 7)  # past the end: a hole of zeros
    assert fs.pread(h, 100, 0) == b"hello\0\0!" and fs.fsize(h) == 8
    fs.pwrite(h, bytearray(b"J"), 0)
    assert fs.pread(h, 4, 0) == b"Jell" and fs.pread(h, 4, 100) == b""
    fs.truncate(h, 2)
    assert fs.pread(h, 100, 0) == b"Je"
    fs.fsync(h)
    fs.close(h)
    assert fs.read_file(os.path.join(d, "f")) == b"Je" and fs.size(os.path.join(d, "f")) == 2
    fs.rename(os.path.join(d, "f"), os.path.join(d, "f"))  # onto itself: nothing changes
    assert fs.listdir(d) == ["f"]
    fs.write_atomic(os.path.join(d, "g"), b"new")
    fs.rename(os.path.join(d, "g"), os.path.join(d, "f"))  # replaces the target
    assert sorted(fs.listdir(d)) == ["f"] and fs.read_file(os.path.join(d, "f")) == b"new"
    with pytest.raises(OSError) as e:
        fs.rmdir(d)
    assert e.value.errno == errno.ENOTEMPTY
    fs.remove(os.path.join(d, "f"))
    with pytest.raises(FileNotFoundError):
        fs.remove(os.path.join(d, "f"))
    fs.remove_if_exists(os.path.join(d, "f"))
    fs.rmdir(d)
    assert not fs.exists(d) and fs.listdir(os.path.join(root, "a")) == []


def test_memory_fs_frees_removed_files():
    fs = MemoryFileSystem()
    fs.mkdir("/d")
    h = fs.open("/d/f")
    fs.pwrite(h, b"x" * 1000, 0)
    fs.remove("/d/f")
    assert fs.pread(h, 10, 0) == b"x" * 10  # an open handle still reads it, as on POSIX
    fs.close(h)
    assert fs._files == {} and fs._handles == {} and fs.listdir("/d") == []
    with pytest.raises(OSError):
        fs.pread(h, 1, 0)
