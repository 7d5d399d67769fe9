"""Unpickling untrusted files: only the globals on an allow-list are resolved, so a pickle that
names anything else (os.system, a custom class) is refused before any of it can run."""

from __future__ import annotations

import io
import pickle
import threading
from contextlib import contextmanager
from typing import Callable

import pandas as pd
from pandas.compat import pickle_compat


class Refused(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; the message is `module.name`."""


# What numpy arrays, dtypes and scalars need: _reconstruct + ndarray + dtype (protocols 0-4),
# _frombuffer (protocol 5), scalar (numpy scalars), and _codecs.encode, through which Python 3
# writes the array bytes at protocol 2. Each only builds data.
_NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})
# pandas stores an index's frequency (e.g. <5 * Minutes>) as a pickled HDF5 attribute; older
# pandas pickled it through copyreg._reconstructor with object as the base.
_OFFSET_MODULES = ("pandas._libs.tslibs.offsets", "pandas.tseries.offsets")
_RECONSTRUCTOR_GLOBALS = frozenset({("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),
                                    ("builtins", "object"), ("__builtin__", "object")})


def _numpy_global(module: str, name: str) -> bool:
    return (module, name) in _NUMPY_GLOBALS


def _hdf5_global(module: str, name: str) -> bool:
    if module in _OFFSET_MODULES:
        cls = getattr(pd.offsets, name, None)
        return isinstance(cls, type) and issubclass(cls, pd.offsets.BaseOffset)
    return _numpy_global(module, name) or (module, name) in _RECONSTRUCTOR_GLOBALS


class _AllowList:
    allows: Callable[[str, str], bool]  # set by each unpickler below

    def find_class(self, module, name):
        if not self.allows(module, name):
            raise Refused(f"{module}.{name}")
        return super().find_class(module, name)


class _ArrayUnpickler(_AllowList, pickle.Unpickler):
    allows = staticmethod(_numpy_global)


class _HDF5Unpickler(_AllowList, pickle_compat.Unpickler):
    """pandas' own unpickler (it rebuilds the frequency objects older pandas wrote), restricted."""
    allows = staticmethod(_hdf5_global)


def load_arrays(data: bytes):
    """Lists, dicts, numbers, text and numpy arrays. latin1 reads the text and array bytes that
    Python 2 pickled (DCRNN's files) and changes nothing for Python 3 pickles."""
    return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()


class _GuardedPickle:
    """Stands in for the `pickle` module inside PyTables: `loads` goes through the allow-list
    and records refusals, since PyTables swallows errors from unpickling attributes."""

    def __init__(self, refused: list[str]):
        self.refused = refused

    def __getattr__(self, name):
        return getattr(pickle, name)

    def loads(self, data, *, encoding="ASCII", errors="strict", **_):
        try:
            return _HDF5Unpickler(io.BytesIO(data), encoding=encoding, errors=errors).load()
        except Refused as exc:
            self.refused.append(str(exc))
            raise


_PYTABLES_LOCK = threading.Lock()


@contextmanager
def pytables_allow_list(tables, refused: list[str]):
    """While the block runs, PyTables unpickles only allow-listed globals, appending refusals to
    `refused`. PyTables calls `pickle.loads` in `tables.attributeset` (attributes, as soon as a
    node opens) and `tables.atom` (object arrays); pandas patches `pickle.loads` itself during a
    read, so those two modules' `pickle` is swapped instead. That is module-wide, hence the lock."""
    with _PYTABLES_LOCK:
        saved = tables.attributeset.pickle, tables.atom.pickle
        tables.attributeset.pickle = tables.atom.pickle = _GuardedPickle(refused)
        try:
            yield
        finally:
            tables.attributeset.pickle, tables.atom.pickle = saved
