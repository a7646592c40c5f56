"""Any order of close, prepare, call, with-exit and garbage collection ends
in a PagetaxError or a correct result, never a signal.  Each case runs in a
subprocess, so that a crash fails the test instead of ending pytest."""
import subprocess
import sys
import textwrap

import pytest

SETUP = """
import gc, numpy as np, pagetax
from pagetax import extents
b = pagetax.Backing.scratch(8 << 20)
ext = extents.generate("rand", 4096, 1 << 20, 4 << 20, seed=1)
buf = pagetax.aligned_buffer(1 << 20)
att = b.attach("page")
def refused(f, what):
    try:
        f()
    except pagetax.PagetaxError as e:
        assert what in str(e), str(e)
        print("refused:", e)
    else:
        raise AssertionError("not refused")
"""

CASES = {
    "a prepared run after its attachment is closed": """
        p = att.prepare("read", ext, buf, calls=2)
        p()
        att.close()
        refused(p, "the attachment or its backing is closed")
        refused(p.make_cold, "the attachment or its backing is closed")
    """,
    "a prepared run after its backing is closed": """
        p = att.prepare("read", ext, buf, calls=2)
        b.close()
        refused(p, "the attachment or its backing is closed")
        refused(lambda: att.run("read", ext, buf), "the attachment or its backing is closed")
        refused(lambda: att.entries(ext), "the attachment is closed")
        refused(att.refcounts, "the attachment is closed")
        refused(lambda: b.attach("vec"), "the backing is closed")
        refused(b.view, "the backing is closed")
    """,
    "a view outlives close and collection": """
        b.view()[:4096] = 7
        v = b.view()[:8192]
        att.close()
        b.close()
        del b, att
        gc.collect()
        assert (v[:4096] == 7).all() and v.sum() >= 7 * 4096
        print("view still readable")
    """,
    "with-blocks closed in the wrong order": """
        with pagetax.Backing.scratch(8 << 20) as b2:
            a2 = b2.attach("sgl")
            p2 = a2.prepare("read", ext, buf)
        refused(p2, "the attachment or its backing is closed")
        a2.close()
        a2.close()
        refused(lambda: a2.hold(ext), "the attachment is closed")
    """,
    "garbage collection of a backing with live attachments": """
        p = att.prepare("read", ext, buf, calls=3)
        del b
        gc.collect()
        p()  # the attachment keeps its backing alive
        att.close()
        refused(p, "the attachment or its backing is closed")
    """,
    "a backing and its attachment collected in one garbage cycle": """
        # The collector clears weak references into a cycle before it
        # finalizes the cycle's objects in any order: the Backing's close()
        # then sees no attachment, and must still not unmap under one.
        calls = []
        class Spy:
            def __init__(self, lib):
                self.lib = lib
            def __getattr__(self, name):
                fn = getattr(self.lib, name)
                if name not in ("pt_detach", "pt_backing_unmap"):
                    return fn
                return lambda *args: (calls.append(name), fn(*args))[1]
        pagetax.core.lib = pagetax.backings.lib = Spy(pagetax.core.lib)
        cycle = [b, att]
        cycle.append(cycle)
        b.cycle = att.cycle = cycle
        del b, att, cycle
        gc.collect()
        assert calls == ["pt_detach", "pt_backing_unmap"], calls
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_call_order_never_crashes(case, tmp_path):
    code = SETUP + textwrap.dedent(CASES[case])
    # away from the source tree, whose pagetax/ has no compiled core
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-2000:]}"
