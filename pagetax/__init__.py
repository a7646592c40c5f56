"""pagetax: what per-page descriptors cost scatter-gather I/O.

    import numpy as np, pagetax
    with pagetax.Backing.scratch(1 << 30) as b:
        ext = pagetax.extents.generate("rand", 4096, 64 << 20, b.size, seed=1)
        buf = np.empty(64 << 20, np.uint8)
        pagetax.gather(b, "page", ext, buf)
"""
from . import extents
from .backings import Backing
from .core import (CACHE_MODES, DESIGNS, OPS, Attachment, Measurement, aligned_buffer, design_entry_bytes, design_metadata, eviction_buffer, gather, scatter)
from .errors import BackingError, ExtentError, Interrupted, PagetaxError
from .extents import EXTENT_DTYPE

__version__ = "0.1.0"

__all__ = [
    "Attachment", "Backing", "aligned_buffer", "eviction_buffer", "BackingError", "CACHE_MODES", "DESIGNS", "EXTENT_DTYPE",
    "ExtentError", "Interrupted", "Measurement", "OPS", "PagetaxError", "design_entry_bytes",
    "design_metadata", "extents", "gather", "scatter",
]
