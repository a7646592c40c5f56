"""What the three cffi build scripts share (build_core.py, reference/build.py,
kernel/build.py): the cdef read from between a header's markers, and one
set of compiler flags.  PAGETAX_SANITIZE=address,undefined builds with
those sanitizers; PAGETAX_WERROR=1 turns warnings into errors."""
import os

from cffi import FFI

CSRC = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(CSRC)   # where setup.py runs: sources are named from here


def cdef(header):
    with open(header) as f:
        return f.read().split("/* cdef-begin */")[1].split("/* cdef-end */")[0]


def flags():
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


def builder(module, header, sources, depends=()):
    """An FFI for `module` (pagetax._core, ...): the cdef of `header`, the
    C `sources` and the files they `depend` on (absolute paths), the
    header's folder on the include path."""
    cflags, ldflags = flags()
    folder = os.path.dirname(header)
    ffi = FFI()
    ffi.cdef(cdef(header))
    ffi.set_source(module, f'#include "{os.path.basename(header)}"',
                   sources=sorted(os.path.relpath(s, ROOT) for s in sources),
                   include_dirs=[os.path.relpath(folder, ROOT)],
                   depends=sorted(os.path.relpath(d, ROOT) for d in depends),
                   extra_compile_args=cflags, extra_link_args=ldflags)
    return ffi
