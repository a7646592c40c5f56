import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _commit():
    """The clone's commit, with '+dirty' for uncommitted changes; None
    outside a git checkout (an sdist)."""
    try:
        head = subprocess.run(["git", "-C", HERE, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


class BuildWithCommit(build_py):
    """Write pagetax/_build.py into the build: the commit the package was
    built from, which results files and `pagetax --version` report."""

    def run(self):
        super().run()
        path = os.path.join(self.build_lib, "pagetax", "_build.py")
        with open(path, "w") as f:
            f.write(f"COMMIT = {_commit()!r}\n")


# Metadata lives in pyproject.toml; this file only wires in the cffi core
# and the build's commit.
setup(
    cffi_modules=["csrc/build_core.py:ffibuilder", "csrc/reference/build.py:ffibuilder",
                  "csrc/kernel/build.py:ffibuilder"],
    cmdclass={"build_py": BuildWithCommit},
)
