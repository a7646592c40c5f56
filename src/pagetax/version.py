"""Which pagetax made a result: the version and the commit it was built
from (setup.py writes _build.py into a wheel), or, run from a checkout,
the checkout's own commit."""
import functools
import os
import subprocess

from . import __version__


def checkout_commit():
    """The checkout's commit, '+dirty' for uncommitted changes; None outside
    a git checkout (a wheel, an sdist).  setup.py asks it too."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # src/..
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=None)
def build_info():
    """{"version": ..., "commit": ...}; commit None when nobody can tell."""
    try:
        from ._build import COMMIT
    except ImportError:
        COMMIT = checkout_commit()
    return {"version": __version__, "commit": COMMIT}


def text():
    info = build_info()
    return f"pagetax {info['version']} (commit {info['commit'] or 'unknown'})"
