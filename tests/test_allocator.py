import ctypes
import platform

import pytest

from stmgt import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_settings_and_repeating_them_is_harmless():
    assert allocator.reuse_freed_memory()
    assert allocator.reuse_freed_memory()


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    class Bare:
        def __init__(self, name):
            pass

    monkeypatch.setattr(ctypes, "CDLL", Bare)
    assert allocator.reuse_freed_memory() is False


def test_a_rejected_setting_is_reported(monkeypatch):
    class Refusing:
        def __init__(self, name):
            self.mallopt = lambda param, value: 0

    monkeypatch.setattr(ctypes, "CDLL", Refusing)
    assert allocator.reuse_freed_memory() is False
