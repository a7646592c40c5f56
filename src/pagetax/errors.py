"""Exceptions pagetax raises; the command line prints their message in one line.
Also the one path from a C error code to an exception (raise_for)."""


class PagetaxError(Exception):
    """Anything pagetax refuses, with a message a user can act on."""

    def __init__(self, message, code=None, index=None, sys_errno=0):
        super().__init__(message)
        self.code = code
        self.index = index
        self.sys_errno = sys_errno


class ExtentError(PagetaxError, ValueError):
    """Extents or buffers that no design may be given."""


class BackingError(PagetaxError):
    """A backing that cannot be created, opened or mapped as asked."""


class Interrupted(PagetaxError):
    """The core stopped a run for SIGINT or SIGTERM (PT_EINTR) and Python's
    own handler raised nothing first (in the main thread it usually does)."""


def raise_for(rc, err, prefix="", cls=None):
    """Raise what a C call's return code and struct pt_error say, with the
    core's message after `prefix`: ExtentError for bad extents or sizes,
    Interrupted for a signal, else `cls` (default PagetaxError)."""
    if rc == 0:  # PT_OK
        return
    # Imported here, not above: readers of result files (compare) import
    # this module and must not load the C core.
    from ._core import ffi, lib
    if rc == lib.PT_EINTR:
        cls = Interrupted
    elif cls is None:
        cls = ExtentError if rc in (lib.PT_EINVAL, lib.PT_ERANGE) else PagetaxError
    raise cls(prefix + ffi.string(err.msg).decode(errors="replace"), code=rc,
              index=int(err.index), sys_errno=err.sys_errno)
