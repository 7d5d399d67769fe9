import ctypes
import os
import platform

import pytest
import torch

from stmgt import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_settings_and_repeating_them_is_harmless():
    assert allocator.reuse_freed_memory()
    assert allocator.reuse_freed_memory()


@pytest.mark.parametrize("call", [allocator.reuse_freed_memory, allocator.release_free_heap])
def test_a_c_library_without_mallopt_or_malloc_trim_is_left_alone(monkeypatch, call):
    class Bare:
        def __init__(self, name):
            pass

    monkeypatch.setattr(ctypes, "CDLL", Bare)
    assert call() is False


def test_a_rejected_setting_is_reported(monkeypatch):
    class Refusing:
        def __init__(self, name):
            self.mallopt = lambda param, value: 0

    monkeypatch.setattr(ctypes, "CDLL", Refusing)
    assert allocator.reuse_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_holes_between_live_tensors_stay_resident_until_released():
    """The table path's pattern: tensors of a few MB served from the heap (as `reuse_freed_memory`
    has it) and freed while others around them live on."""
    allocator.reuse_freed_memory()
    tensors = [torch.ones(2 * 2**20) for _ in range(64)]          # 8 MB each, touched
    del tensors[::2]
    held = resident_bytes()
    assert allocator.release_free_heap()
    assert held - resident_bytes() > 128 * 2**20                     # of the 256 MB freed


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
