"""pagetax: what per-page descriptors cost scatter-gather I/O.

    import numpy as np, pagetax
    with pagetax.Backing.scratch(1 << 30) as b:
        ext = pagetax.extents.generate("rand", 4096, 64 << 20, b.size, seed=1)
        buf = np.empty(64 << 20, np.uint8)
        pagetax.gather(b, "page", ext, buf)

The names below are imported when first used (PEP 562), so that readers of
result files (`pagetax compare`, plot, report) never load the C core.
"""
import importlib

__version__ = "0.1.0"

_HOME = {
    "Attachment": "core", "aligned_buffer": "core", "eviction_buffer": "core",
    "gather": "core", "scatter": "core",
    "DESIGNS": "designs", "design_entry_bytes": "designs", "design_metadata": "designs",
    "CACHE_MODES": "timed_run", "Measurement": "timed_run", "OPS": "timed_run",
    "Backing": "backings", "EXTENT_DTYPE": "extents",
    "BackingError": "errors", "ExtentError": "errors", "Interrupted": "errors",
    "PagetaxError": "errors",
}

__all__ = sorted(_HOME) + ["extents"]


def __getattr__(name):
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    else:  # a submodule (pagetax.core, pagetax.extents, ...) not imported yet
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
