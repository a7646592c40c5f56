import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _commit():
    """The commit being built, read as pagetax --version reads a checkout's
    (pagetax/__init__ and version.py import nothing that must be built)."""
    sys.path.insert(0, os.path.join(HERE, "src"))
    from pagetax.version import checkout_commit
    return checkout_commit()


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
