"""Keep freed heap memory for reuse, so that a CPU forward's large temporaries do not fault in fresh pages.

A forward on CPU allocates and frees tensors of a few to a few tens of MiB per layer, the same
sizes batch after batch. glibc serves blocks above its mmap threshold with ``mmap`` and hands
them back to the kernel on ``free``, so each allocation faults in zeroed pages again: in the
fake-quantized evaluation that costs more than the arithmetic. Raising the mmap and trim
thresholds (``mallopt``) keeps such blocks in the heap for the next allocation. Only where memory
comes from changes; every computed value is the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap: glibc's largest accepted threshold on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Free memory kept at the top of the heap before it is returned to the system.
TRIM_THRESHOLD_BYTES = 256 * 2**20


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process.

    Returns:
        Whether both settings took effect: False where the C library has no ``mallopt`` (macOS,
        musl; nothing changes) or refuses a value. Either way results are unaffected.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return mmap_set and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
