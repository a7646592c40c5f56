"""A throw-away loop device over a tmpfs file, for O_DIRECT reads that pin
user pages.  It is configured with LO_FLAGS_AUTOCLEAR and its file is
unlinked at once, so the kernel detaches it and frees the file when the
last descriptor closes: on a normal exit, Ctrl-C, SIGTERM or SIGKILL alike."""
import fcntl
import os
import secrets
import struct
import time

from ..errors import PagetaxError

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A        # Linux 5.8
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR = 1, 4
_INFO64 = "QQQQQIIII64s64s32sQQ"   # struct loop_info64, 232 bytes
_CONFIG = f"II{_INFO64}8Q"         # struct loop_config: fd, block_size, info, reserved


def config_bytes(fd, flags):
    """struct loop_config for LOOP_CONFIGURE (linux/loop.h)."""
    info = (0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)
    return struct.pack(_CONFIG, fd, 0, *info, *([0] * 8))


def backing_file(name):
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return None


class LoopDevice:
    """/dev/loopN over a new tmpfs file holding `data` (bytes), read-only;
    `fd` is the device opened O_RDONLY | O_DIRECT."""

    def __init__(self, data, directory="/dev/shm"):
        self.fd = None
        self.name = None
        path = os.path.join(directory, f"pagetax-loop-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            file_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise PagetaxError(f"cannot create the loop device's file in {directory}: "
                               f"{e.strerror}")
        try:
            os.unlink(path)
            os.write(file_fd, data)
            self._attach(file_fd)
        finally:
            os.close(file_fd)  # the loop device holds the file now, if attached

    def _attach(self, file_fd):
        try:
            control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise PagetaxError(f"no loop devices: /dev/loop-control: {e.strerror}"
                               + (" (pagetax kernel needs root)" if e.errno == 13 else ""))
        try:
            for _ in range(8):  # another process may take the free device first
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                name = f"loop{number}"
                dev = os.open(f"/dev/{name}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    fcntl.ioctl(dev, LOOP_CONFIGURE,
                                config_bytes(file_fd, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR))
                except OSError as e:
                    os.close(dev)
                    if e.errno == 16:   # EBUSY: taken meanwhile
                        continue
                    raise PagetaxError(f"cannot configure /dev/{name}: {e.strerror}")
                try:
                    self.fd = os.open(f"/dev/{name}", os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
                finally:
                    os.close(dev)   # the O_DIRECT descriptor keeps the device configured
                self.name = name
                return
            raise PagetaxError("no free loop device: every one was taken while configuring")
        finally:
            os.close(control)

    def close(self):
        """Close the last descriptor; the kernel detaches the device (autoclear).
        Waits up to a second for it to show as detached."""
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None
        deadline = time.monotonic() + 1.0
        while backing_file(self.name) and time.monotonic() < deadline:
            time.sleep(0.01)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
