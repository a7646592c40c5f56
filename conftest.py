"""`python -m pytest` puts the current folder first on sys.path, and in a
clone the source tree's pagetax/ has no compiled core: it would shadow the
installed package.  Where the tree has no built core, the tree is taken off
sys.path before any test imports pagetax, so the installed one is tested.
(`pip install -e .` or `setup.py build_ext --inplace` builds it in the tree,
and then the tree is what runs.)"""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

if not glob.glob(os.path.join(HERE, "pagetax", "_core*.so")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    for name in [m for m in sys.modules if m == "pagetax" or m.startswith("pagetax.")]:
        del sys.modules[name]
