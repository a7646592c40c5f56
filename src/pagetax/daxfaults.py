"""How the kernel really mapped an fsdax file: its PMD and PTE faults.

smaps does not show fsdax PMD mappings (it reports 4 kB pages for them), so
pagetax counts the kernel's own `fs_dax` trace events while a mapping is
populated, in a private tracefs instance filtered to this process:

- `dax_pmd_fault_done` whose result is NOPAGE: 2 MiB mapped with one PMD;
- the same with FALLBACK: the kernel fell back to PTEs for that 2 MiB;
- `dax_pte_fault_done`: 4 KiB mapped with one PTE.

Where tracefs or the events are missing (not root, no CONFIG_FS_DAX, no
tracefs mount), the count is None with the reason, and the mapping's page
size is recorded as unknown rather than as a wrong 4K.
"""
import os
import secrets

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENTS = ("dax_pmd_fault_done", "dax_pte_fault_done")
PMD_BYTES = 2 << 20
PTE_BYTES = 4096


def _tracefs():
    for root in TRACEFS:
        if os.path.isdir(os.path.join(root, "instances")):
            return root
    return None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class DaxFaultTrace:
    """`with DaxFaultTrace() as t: <map and populate>`; then t.counts is
    {"pmd": n, "pmd_fallback": n, "pte": n} or None, and t.why says why not.
    The tracefs instance is removed on every exit path."""

    def __init__(self):
        self.counts = None
        self.why = None
        self._dir = None

    def __enter__(self):
        root = _tracefs()
        if root is None:
            self.why = "tracefs is not mounted"
            return self
        if not os.path.isdir(os.path.join(root, "events", "fs_dax")):
            self.why = "this kernel has no fs_dax trace events"
            return self
        path = os.path.join(root, "instances", f"pagetax-{os.getpid()}-{secrets.token_hex(3)}")
        try:
            os.mkdir(path)
        except OSError as e:
            self.why = f"cannot make a tracefs instance: {e.strerror}"
            return self
        self._dir = path
        try:
            events = os.path.join(path, "events", "fs_dax")
            _write(os.path.join(events, "filter"), f"common_pid == {os.getpid()}")
            for name in EVENTS:
                _write(os.path.join(events, name, "enable"), "1")
        except OSError as e:
            self.why = f"cannot enable the fs_dax events: {e.strerror}"
            self._remove()
        return self

    def __exit__(self, *exc):
        if self._dir is None:
            return False
        try:
            for name in EVENTS:
                _write(os.path.join(self._dir, "events", "fs_dax", name, "enable"), "0")
            with open(os.path.join(self._dir, "trace")) as f:
                self.counts = count(f)
        except OSError as e:
            self.why = f"cannot read the trace: {e.strerror}"
        finally:
            self._remove()
        return False

    def _remove(self):
        try:
            os.rmdir(self._dir)
        except OSError:
            pass
        self._dir = None


def count(lines):
    """Faults by kind, from tracefs `trace` text."""
    counts = {"pmd": 0, "pmd_fallback": 0, "pte": 0}
    for line in lines:
        if "dax_pmd_fault_done:" in line:
            counts["pmd_fallback" if "FALLBACK" in line else "pmd"] += 1
        elif "dax_pte_fault_done:" in line:
            counts["pte"] += 1
    return counts


def mapping(counts, why, size):
    """The `mapping` object of a result file for an fsdax backing."""
    if counts is None:
        return {"page_size": "unknown", "pmd_mapped_bytes": None, "method": "none",
                "why": f"smaps does not show fsdax PMD mappings, and {why}"}
    pmd = counts["pmd"] * PMD_BYTES
    label = "2M" if pmd >= size else "mixed" if pmd else "4K"
    return {"page_size": label, "pmd_mapped_bytes": pmd,
            "pte_mapped_bytes": counts["pte"] * PTE_BYTES, "faults": counts,
            "method": "fs_dax trace events while populating"}
