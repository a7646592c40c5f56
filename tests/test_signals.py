"""The core's signal handlers chain to whatever was installed before them,
in its own calling convention (issue 13, item 5).  Each case runs in a
subprocess: a wrong chain ends the process, not the test run."""
import subprocess
import sys
import textwrap

RUN_IN_BACKGROUND = """
import os, signal, threading, time, pagetax
from pagetax import extents
b = pagetax.Backing.scratch(64 << 20)
att = b.attach("vec")
ext = extents.generate("rand", 64, 16 << 20, b.size, seed=1)
buf = pagetax.aligned_buffer(16 << 20)
outcome = []
def run():
    try:
        att.run("read", ext, buf, reps=400, phase_reps=0)
        outcome.append("finished")
    except pagetax.PagetaxError as e:
        outcome.append(str(e))
t = threading.Thread(target=run)
t.start()
time.sleep(0.5)  # the run is under way: the core's handlers are installed
"""


def _python(code, *flags, cwd):
    # away from the source tree, whose pagetax/ has no compiled core
    return subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_a_sigbus_outside_the_data_path_reaches_faulthandler(tmp_path):
    """A SIGBUS in a thread that is not in a guarded region (here: Python
    touching a truncated mapping while another thread runs) goes to the
    handler that was there, Python's faulthandler, which prints the stack."""
    p = _python(RUN_IN_BACKGROUND + """
import mmap, tempfile
f = tempfile.TemporaryFile()
f.truncate(1 << 20)
m = mmap.mmap(f.fileno(), 1 << 20)
f.truncate(0)
m[0]
""", "-X", "faulthandler", cwd=tmp_path)
    # it still dies of the fault, as without pagetax: SIGBUS, or under a
    # sanitizer that handler's own report, which faulthandler chains to
    assert p.returncode != 0, p.stderr[-2000:]
    assert "Fatal Python error: Bus error" in p.stderr, p.stderr[-2000:]


CATCHER = r"""
#include <signal.h>
static volatile sig_atomic_t got_signo, got_info;
static void on_term(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    got_signo = sig;
    got_info = si && si->si_signo == sig;
}
int install(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = on_term;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGTERM, &sa, 0);
}
int signo(void) { return got_signo; }
int info(void) { return got_info; }
"""


def test_a_siginfo_handler_is_chained_with_its_siginfo(tmp_path):
    """A SIGTERM handler installed with SA_SIGINFO is called as one: with
    the siginfo the kernel gave, not as a one-argument handler."""
    src = tmp_path / "catcher.c"
    src.write_text(CATCHER)
    so = tmp_path / "catcher.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    p = _python(f"""
import ctypes
catcher = ctypes.CDLL({str(so)!r})
assert catcher.install() == 0
""" + RUN_IN_BACKGROUND + """
os.kill(os.getpid(), signal.SIGTERM)
t.join()
print("outcome:", outcome)
print("handler:", catcher.signo(), catcher.info())
""", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "outcome: ['interrupted']" in p.stdout
    assert f"handler: {int(__import__('signal').SIGTERM)} 1" in p.stdout
