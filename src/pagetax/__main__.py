import os
import sys


def _source_tree_without_core():
    """`python -m pagetax` from a clone's root finds the source tree's
    pagetax/ first (Python looks in the current folder), which has no
    compiled core unless it was built there (pip install -e .)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.exists(os.path.join(os.path.dirname(here), "setup.py")) and \
        not any(n.startswith("_core") for n in os.listdir(here))


if _source_tree_without_core():
    print("pagetax: error: this is the source tree's pagetax/, which has no compiled core, "
          "found first because Python looks in the current folder: run pagetax from another "
          "folder (or the `pagetax` command), or build it here with pip install -e .",
          file=sys.stderr)
    sys.exit(1)

from .cli import main  # noqa: E402

sys.exit(main())
