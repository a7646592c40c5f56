"""The kernel's paths, one module each: a probe times `calls` calls of its
path over the first `pages` pages of a buffer, and checks that the path did
what it is named for.  The C (csrc/kernel/) times each system call alone;
the probes own the file descriptors and the checks.

  splice.py    vmsplice into a pipe, then splice to /dev/null
  mincore.py   the page-table walk alone
  populate.py  MADV_POPULATE_READ, the slow GUP walk
  uring.py     io_uring O_DIRECT READ against READ_FIXED, from a loop device
  common.py    what they share

A probe declares what it is (`series`, `max_pages`, `needs_root`,
`calls_factor`); nothing outside its module tests its name.  The registry
below names each probe's module, imported when first used, so that reading
a result file never loads the compiled probes."""
import importlib

# The registry: one line per path, in the order they are measured.
REGISTRY = {
    "mincore": ("mincore", "Mincore"),
    "populate": ("populate", "Populate"),
    "vmsplice": ("splice", "Splice"),
    "io_uring": ("uring", "Uring"),
}


def probe(name):
    """The probe class of a path in REGISTRY."""
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)
