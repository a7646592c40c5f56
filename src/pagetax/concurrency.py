"""Two measurements at once on one machine skew each other's timings
silently.  Each `pagetax run` and `pagetax kernel` holds a lock file while
it measures (flock, so a killed process leaves nothing held), and asks who
else holds one as it starts and as it ends."""
import fcntl
import os
import tempfile

DIR = os.path.join(tempfile.gettempdir(), "pagetax-measuring")
DIR_ENV = "PAGETAX_MEASURING_DIR"   # another folder: a test's own, away from the machine's


class Measuring:
    def __init__(self, directory=None):
        self.dir = directory or os.environ.get(DIR_ENV) or DIR
        self.fd = None
        self.path = None

    def __enter__(self):
        try:
            os.makedirs(self.dir, exist_ok=True)
            if os.stat(self.dir).st_uid == os.geteuid():
                os.chmod(self.dir, 0o1777)   # every user's runs meet here
            self.path = os.path.join(self.dir, str(os.getpid()))
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            self.fd = None   # no lock, no warning: the measurement itself does not need it
        return self

    def others(self):
        """pids of other pagetax processes measuring now; stale files (a
        process that died) are removed."""
        found = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return found
        for name in names:
            if not name.isdigit() or int(name) == os.getpid():
                continue
            path = os.path.join(self.dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                found.append(int(name))
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            finally:
                os.close(fd)
        return sorted(found)

    def __exit__(self, *exc):
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def record(doc, at_start, at_end):
    """The result's `concurrent_measurements`, and a warning when any."""
    doc["concurrent_measurements"] = {"at_start": at_start, "at_end": at_end}
    pids = sorted(set(at_start) | set(at_end))
    if pids:
        doc.setdefault("warnings", []).append(
            f"another pagetax was measuring on this machine (pid {', '.join(map(str, pids))}): "
            "each run's timings skew the other's; run them one after the other")
