"""A fresh clone's source tree has no compiled core; `python -m pytest bench`
run in it, which puts the clone's root first on sys.path, must still test
the installed pagetax (issue 16, item 5): the package lives in src/, so
nothing at the root can shadow it (issue 26)."""
import os
import shutil
import subprocess
import sys

import pytest

import pagetax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clone_without_core(dest):
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), dest)
    for tree in ("src", "bench", "tests"):
        shutil.copytree(os.path.join(ROOT, tree), os.path.join(dest, tree),
                        ignore=shutil.ignore_patterns("_core*.so", "__pycache__", "*.pyc"))


@pytest.mark.skipif(os.path.dirname(os.path.abspath(pagetax.__file__)) ==
                    os.path.join(ROOT, "src", "pagetax"),
                    reason="pagetax runs from this tree (an editable install, whose finder "
                    "wins over any clone's tree); CI installs it as a user does")
def test_python_m_pytest_bench_in_a_clone_uses_the_installed_core(tmp_path):
    _clone_without_core(tmp_path)
    p = subprocess.run([sys.executable, "-m", "pytest", "bench", "--collect-only", "-q",
                        "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "No module named 'pagetax._core'" not in p.stdout + p.stderr
    assert "test_scatter_gather.py::" in p.stdout


@pytest.mark.skipif(os.path.dirname(os.path.abspath(pagetax.__file__)) ==
                    os.path.join(ROOT, "src", "pagetax"),
                    reason="pagetax runs from this tree (an editable install)")
def test_python_m_pagetax_runs_from_a_clones_root(tmp_path):
    """The README's `python -m pagetax` from where the user cloned: the
    installed package, not a traceback from the tree (issue 26)."""
    _clone_without_core(tmp_path)
    p = subprocess.run([sys.executable, "-m", "pagetax", "metadata"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "6,250,000,000" in p.stdout
