"""cffi build script for pagetax._core (API mode, out of line).

The cdef is the marked part of csrc/pagetax.h, so the binding mirrors the
header exactly.  PAGETAX_SANITIZE=address,undefined builds the core with
those sanitizers; PAGETAX_WERROR=1 turns warnings into errors.
"""
import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _cdef():
    with open(os.path.join(HERE, "pagetax.h")) as f:
        text = f.read()
    return text.split("/* cdef-begin */")[1].split("/* cdef-end */")[0]


def _flags():
    cflags = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    ldflags = []
    if os.environ.get("PAGETAX_WERROR"):
        cflags.append("-Werror")
    sanitize = os.environ.get("PAGETAX_SANITIZE")
    if sanitize:
        cflags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer",
                   "-fno-sanitize-recover=all"]
        ldflags += [f"-fsanitize={sanitize}"]
    return cflags, ldflags


# Paths relative to the project root, where setup.py runs.
_sources = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(HERE, "*.c")))
_cflags, _ldflags = _flags()

ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pagetax._core",
    '#include "pagetax.h"',
    sources=_sources,
    include_dirs=["csrc"],
    depends=sorted(os.path.relpath(p, ROOT) for p in
                   glob.glob(os.path.join(HERE, "*.h")) + glob.glob(os.path.join(HERE, "*.def"))),
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
