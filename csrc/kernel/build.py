"""cffi build script for pagetax._kernel (API mode, out of line): the probes
`pagetax kernel` times the running kernel with (csrc/kernel/probes.c,
uring.c), compiled apart from the core.  Linux only."""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _cdef():
    with open(os.path.join(HERE, "probes.h")) as f:
        return f.read().split("/* cdef-begin */")[1].split("/* cdef-end */")[0]


_cflags = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
_ldflags = []
if os.environ.get("PAGETAX_WERROR"):
    _cflags.append("-Werror")
if os.environ.get("PAGETAX_SANITIZE"):  # as the core's (csrc/build_core.py)
    _cflags += [f"-fsanitize={os.environ['PAGETAX_SANITIZE']}", "-fno-omit-frame-pointer"]
    _ldflags += [f"-fsanitize={os.environ['PAGETAX_SANITIZE']}"]

ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pagetax._kernel",
    '#include "probes.h"',
    sources=[os.path.relpath(os.path.join(HERE, f), ROOT) for f in ("probes.c", "uring.c")],
    include_dirs=[os.path.relpath(HERE, ROOT)],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
