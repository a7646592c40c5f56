"""Exceptions pagetax raises; the command line prints their message in one line."""


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
