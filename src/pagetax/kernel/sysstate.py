"""Kernel settings a measurement changes, put back on every exit path.

A KernelState keeps one last-in-first-out stack of undo actions: the
original text of every file it wrote (sysctls, sysfs knobs, trace
settings) and any cleanup registered with on_exit().  Leaving the `with`
block runs them all, whatever the way out: an exception, Ctrl-C, SIGTERM
or SIGHUP (which raise while inside, so that `finally` blocks run), or an
exit that skips unwinding (an atexit fallback).
"""
import atexit
import contextlib
import errno
import os
import signal
import threading

from ..errors import PagetaxError

# Raised as SystemExit(128 + signo), as pagetax vm does: the exit status a
# shell reports for a signal, and no `except Exception` stops it.
_RAISING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Held while restoring, so that a second Ctrl-C cannot cut a restore short.
_HELD_WHILE_RESTORING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _hint(err, path):
    """Why an errno likely happened, for a user to act on."""
    if err in (errno.EACCES, errno.EPERM):
        return "pagetax kernel needs root" if os.geteuid() != 0 else "refused even to root"
    if err == errno.ENOENT:
        return f"this kernel has no {os.path.basename(path)}"
    return None


def _os_failure(verb, path, e):
    """One line for an OSError on path: strerror and, when known, why."""
    hint = _hint(e.errno, path)
    what = e.strerror or str(e)
    return f"{verb} {path}: {what}" + (f" ({hint})" if hint else "")


def _why(e):
    """A failed undo action's reason, in a few words."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _chosen(text):
    """What to write back: a sysfs choice reads "always [madvise] never" and
    takes only the bracketed word."""
    if "[" in text and "]" in text:
        return text.split("[", 1)[1].split("]", 1)[0]
    return text


def _raise_on_signal(signo, frame):
    raise SystemExit(128 + signo)


class KernelState:
    """Settings changed for a measurement, each restored exactly once.

        with KernelState() as state:
            state.set("/proc/sys/vm/hugetlb_optimize_vmemmap", "1")
            state.on_exit(lambda: detach(loop), f"detach {loop}")
            ...
    """

    def __init__(self):
        self._undo = []          # (what, callable), run last-in-first-out
        self._originals = {}     # path -> original text, for paths set since the last restore
        self._read_back = set()  # paths whose restore is checked by reading them back
        self._previous_handlers = {}
        self._atexit_registered = False

    # -- files ------------------------------------------------------------

    def read(self, path):
        """The file's text, stripped; PagetaxError in one line if unreadable."""
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            raise PagetaxError(_os_failure("cannot read", path, e),
                               sys_errno=e.errno or 0) from None

    def write(self, path, value):
        """Write value to path as `echo value > path` would, without the
        newline.  Subclasses may watch writes (the tests' fake kernel does)."""
        data = str(value).encode()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def set(self, path, value):
        """Write value to path, remembering the original text the first time."""
        path = os.fspath(path)
        value = str(value)
        first = path not in self._originals
        if first:
            self._originals[path] = self.read(path)
            # Pushed before the write: a signal between the two must not
            # leave a changed file with nothing to put it back.
            self._push(f"{path} to {self._originals[path]}",
                       lambda: self._put_back(path))
        try:
            self.write(path, value)
        except OSError as e:
            if first and self._unchanged(path):
                self._undo.pop()
                del self._originals[path]
            raise PagetaxError(_os_failure(f"cannot write {value} to", path, e),
                               sys_errno=e.errno or 0) from None

    def write_undone_by(self, path, value, undo_value):
        """Write value to path, put back by writing undo_value: for a file
        whose text does not read back as it was written (a trace filter).
        The undo is pushed before the write, as set()'s is, and dropped if
        the write fails."""
        path = os.fspath(path)
        self._push(f"{path} to {undo_value!r}", lambda: self.write(path, undo_value))
        try:
            self.write(path, value)
        except OSError as e:
            self._undo.pop()
            raise PagetaxError(_os_failure(f"cannot write {value} to", path, e),
                               sys_errno=e.errno or 0) from None

    def set_and_read_back(self, path, value):
        """set(), then what the file says: for nr_hugepages, how many pages
        the kernel really has, which may be fewer than asked.  Its restore
        is checked the same way."""
        self.set(path, value)
        self._read_back.add(os.fspath(path))
        return self.read(path)

    def original(self, path):
        """The text path had before the first set() since the last restore."""
        return self._originals[os.fspath(path)]

    def _unchanged(self, path):
        try:
            return self.read(path) == self._originals[path]
        except PagetaxError:
            return False

    def _put_back(self, path):
        original = self._originals.pop(path)
        self.write(path, _chosen(original))
        if path in self._read_back:
            self._read_back.discard(path)
            now = self.read(path)
            if now != original:
                raise PagetaxError(f"it reads {now} after writing {original}")

    # -- the undo stack -----------------------------------------------------

    def on_exit(self, undo, what):
        """Run undo() on restore, in reverse order of registration, among the
        set() restores; `what` names it if it fails ("detach /dev/loop3")."""
        self._push(what, undo)

    def _push(self, what, undo):
        self._undo.append((what, undo))
        if not self._atexit_registered:
            atexit.register(self._restore_at_exit)
            self._atexit_registered = True

    def restore(self):
        """Run every undo action once, last first, past any that fails; then
        raise one PagetaxError naming what could not be put back."""
        failed = []
        with _signals_held():
            while self._undo:
                what, undo = self._undo.pop()
                try:
                    undo()
                except Exception as e:  # noqa: BLE001 -- the rest must still run
                    failed.append(f"{what} ({_why(e)})")
            self._originals.clear()
            self._read_back.clear()
            if self._atexit_registered:
                atexit.unregister(self._restore_at_exit)
                self._atexit_registered = False
        if failed:
            raise PagetaxError(f"could not put back {len(failed)} setting(s), set them by hand: "
                               + "; ".join(failed))

    def _restore_at_exit(self):
        # atexit would print a traceback; the message is all a user needs.
        try:
            self.restore()
        except PagetaxError as e:
            os.write(2, f"pagetax: error: {e}\n".encode())

    # -- the with block -----------------------------------------------------

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signo in _RAISING_SIGNALS:
                # Only where nobody handles it: the default ends the process
                # without running finally blocks.
                if signal.getsignal(signo) is signal.SIG_DFL:
                    self._previous_handlers[signo] = signal.signal(signo, _raise_on_signal)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.restore()
        finally:
            while self._previous_handlers:
                signo, handler = self._previous_handlers.popitem()
                signal.signal(signo, handler)
        return False


@contextlib.contextmanager
def _signals_held():
    """Block SIGINT, SIGTERM and SIGHUP in the main thread while restoring;
    they are delivered when it is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_WHILE_RESTORING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
