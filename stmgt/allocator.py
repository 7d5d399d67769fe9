"""C-allocator settings for CPU work. A forward pass allocates and frees several tensors of a few
MB in every layer. With glibc's defaults each of them is a fresh `mmap` that is handed back to the
OS when freed, so every forecast page-faults its working memory in again, and forecasts and CPU
training steps run slower (`benchmarks/scrub_latency.py` measures forecasts both ways; figures in
benchmarks/RESULTS.md, *Dashboard latency*)."""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # mallopt parameters, from glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 2**20                      # the largest value glibc accepts
TRIM_THRESHOLD = 256 * 2**20                     # freed heap kept for reuse before it is returned


def reuse_freed_memory() -> bool:
    """Serve tensors up to 32 MB from the heap and keep up to 256 MB of freed heap for the next
    allocation. Process-wide, so the app and the command line call it once at start. Returns
    False (and changes nothing) where the C library has no `mallopt`, e.g. on macOS or Windows."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

