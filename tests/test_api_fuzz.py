"""A stateful fuzzer for the Python API (issue 13, item 6).

Hypothesis drives random sequences of create, attach, prepare, call, hold,
close and garbage collection across designs, thread counts and backings, as
a notebook or someone's asv suite might.  A numpy shadow of every backing
says what its bytes must be; after every call the buffers (a gather) or the
whole mapping (a scatter) are compared with it, and every counting design's
references must be back at one.  A closed object must refuse with a
PagetaxError that says so; any other error, or a signal, fails the test.

The budget is bounded for CI: PAGETAX_FUZZ_EXAMPLES sequences (default 50)
of up to 40 steps.  The sanitized CI pass runs it too.
"""
import gc
import os
import tempfile
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import pagetax
from pagetax.designs import design_flags, design_layout, design_table

MIB = 1 << 20
SIZES = [4 * MIB, 8 * MIB]
DESIGNS = list(pagetax.DESIGNS)
CLOSED = "closed"
MAX_LIVE_BACKINGS = 3
KINDS = st.sampled_from(["dev-shm", "memfd", "file"])


def _random_extents(draw, lo, hi, max_segments):
    """Non-overlapping extents in [lo, hi), in random order: slots of one
    size, each with a random start and length inside it, so that segments
    start and end anywhere and may cross pages."""
    slot = draw(st.sampled_from([64, 100, 4096, 5000, 65536]))
    slots = (hi - lo) // slot
    n = draw(st.integers(1, min(max_segments, slots)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(slots, size=n, replace=False).astype(np.uint64)
    lens = rng.integers(1, slot + 1, size=n).astype(np.uint64)
    skew = (rng.integers(0, slot, size=n).astype(np.uint64) % (np.uint64(slot) - lens + 1))
    return pagetax.extents.make(np.uint64(lo) + chosen * np.uint64(slot) + skew, lens)


def expected_counts(ext, granule, data_bytes):
    """References one build takes, per descriptor: one for each granule an
    extent touches."""
    first = (ext["off"] // np.uint64(granule)).astype(np.int64)
    last = ((ext["off"] + ext["len"] - np.uint64(1)) // np.uint64(granule)).astype(np.int64)
    pages = np.concatenate([np.arange(f, l + 1) for f, l in zip(first, last)])
    return np.bincount(pages, minlength=-(-data_bytes // granule))


def assert_same(got, want, what):
    """np.array_equal, then the first differing byte on a mismatch
    (np.testing's own check is ten times slower on megabytes)."""
    if not np.array_equal(got, want):
        i = int(np.flatnonzero(got != want)[0])
        raise AssertionError(f"{what}: at [{i}], {got[i]} where numpy says {want[i]}")


class ShadowBacking:
    """A backing and what numpy says its bytes are."""

    def __init__(self, backing):
        self.backing = backing
        self.view = backing.view()
        assert not self.view.any(), "a new backing starts zeroed"
        self.shadow = self.view.copy()
        # altmap keeps descriptors in its reserve; nothing else writes there
        self.reserve = design_layout("altmap", backing.size)[0]
        self.closed = False
        self.table_user = lambda: None   # weakly, the attachment keeping its table here

    def table_in_use(self):
        att = self.table_user()
        return att is not None and att._ptr != pagetax.core.ffi.NULL


class Attached:
    def __init__(self, sb, att):
        self.sb, self.att = sb, att
        self.design = att.design
        self.flags = design_flags(att.design)
        self.closed = False
        self.held = None      # per-descriptor counts a hold added

    def table_changed(self):
        """A table on the backing is the design's own state, checked through
        refcounts(): the shadow takes the reserve's bytes as they now are."""
        if "table_on_backing" in self.flags:
            self.sb.shadow[:self.sb.reserve] = self.sb.view[:self.sb.reserve]

    def gone(self):
        return self.closed or self.sb.closed


class Prepared:
    def __init__(self, at, prepared, op, exts, bufs, calls):
        self.at, self.prepared, self.op = at, prepared, op
        self.exts, self.bufs = exts, bufs
        self.calls_left = calls


class APIMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.TemporaryDirectory(prefix="pagetax-fuzz-")
        self.backings, self.attached, self.prepared = [], [], []

    def teardown(self):
        for b in {id(x.att.backing): x.att.backing for x in self.attached}.values():
            b.close()
        for sb in self.backings:
            sb.backing.close()
        self.dir.cleanup()

    # -- creation ------------------------------------------------------------
    @initialize(kind=KINDS, size=st.sampled_from(SIZES), design=st.sampled_from(DESIGNS),
                data=st.data())
    def start(self, kind, size, design, data):
        """Every sequence starts with a backing and an attachment, so that
        most steps move bytes rather than find nothing to act on."""
        self._create(kind, size)
        self._attach(data, design, data.draw(st.booleans()))

    @precondition(lambda self: sum(not b.closed for b in self.backings) < MAX_LIVE_BACKINGS)
    @rule(kind=KINDS, size=st.sampled_from(SIZES))
    def create(self, kind, size):
        self._create(kind, size)

    def _create(self, kind, size):
        if kind == "file":
            b = pagetax.Backing.from_path(os.path.join(self.dir.name, f"b{len(self.backings)}"),
                                          size)
        else:
            b = pagetax.Backing.scratch(size, directory="/dev/shm" if kind == "dev-shm" else None)
        self.backings.append(ShadowBacking(b))

    @precondition(lambda self: self.backings)
    @rule(data=st.data(), design=st.sampled_from(DESIGNS), at_reserve=st.booleans())
    def attach(self, data, design, at_reserve):
        self._attach(data, design, at_reserve)

    def _attach(self, data, design, at_reserve):
        sb = data.draw(st.sampled_from(self.backings))
        off = nbytes = 0
        if design != "altmap" and at_reserve:   # leave the first 2 MiB to altmap
            off, nbytes = sb.reserve, sb.backing.size - sb.reserve
        if sb.closed:
            with pytest.raises(pagetax.PagetaxError, match=CLOSED):
                sb.backing.attach(design, off, nbytes)
            return
        if "table_on_backing" in design_flags(design) and sb.table_in_use():
            with pytest.raises(pagetax.PagetaxError, match="already keeps the descriptors"):
                sb.backing.attach(design, off, nbytes)
            return
        at = Attached(sb, sb.backing.attach(design, off, nbytes))
        if "table_on_backing" in at.flags:
            sb.table_user = weakref.ref(at.att)
        at.table_changed()                     # altmap's table was just written there
        self.attached.append(at)

    @precondition(lambda self: self.attached)
    @rule(data=st.data(), op=st.sampled_from(["read", "write"]), threads=st.integers(1, 2),
          cache=st.sampled_from(["warm", "cold"]), reps=st.integers(1, 2),
          calls=st.integers(1, 2), segs_per_io=st.sampled_from([0, 1, 3]))
    def prepare(self, data, op, threads, cache, reps, calls, segs_per_io):
        self._prepare(data, op, threads, cache, reps, calls, segs_per_io)

    def _prepare(self, data, op, threads, cache, reps, calls, segs_per_io):
        at = data.draw(st.sampled_from(self.attached))
        att = at.att
        if at.gone():
            with pytest.raises(pagetax.PagetaxError, match=CLOSED):
                att.prepare(op, pagetax.extents.make([0], [64]), pagetax.aligned_buffer(64))
            return
        base = att.data_offset
        # Writes stay out of altmap's reserve: [base + lo, ...) of the backing.
        lo = max(0, at.sb.reserve - base) if op == "write" else 0
        if op == "write" and "contiguous" in at.flags and lo:
            op, lo = "read", 0      # the roofline writes from its data area's start
        share = (att.data_bytes - lo) // threads
        exts = [_random_extents(data.draw, lo + t * share, lo + (t + 1) * share, 40)
                for t in range(threads)]
        if "contiguous" in at.flags:  # all threads' bytes, packed, must fit
            assert sum(int(e["len"].sum()) for e in exts) <= att.data_bytes
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        bufs = []
        for e in exts:
            buf = pagetax.aligned_buffer(int(e["len"].sum()))
            buf[:] = rng.integers(0, 256, buf.size, dtype=np.uint8)
            bufs.append(buf)
        p = att.prepare(op, exts if threads > 1 else exts[0], bufs if threads > 1 else bufs[0],
                        reps=reps, calls=calls, cache=cache, segs_per_io=segs_per_io)
        self.prepared.append(Prepared(at, p, op, exts, bufs, calls))
        return self.prepared[-1]

    @precondition(lambda self: self.attached)
    @rule(data=st.data(), op=st.sampled_from(["read", "write"]), threads=st.integers(1, 2),
          cache=st.sampled_from(["warm", "cold"]), segs_per_io=st.sampled_from([0, 1, 3]))
    def prepare_and_call(self, data, op, threads, cache, segs_per_io):
        """The common case, prepared and called at once."""
        pr = self._prepare(data, op, threads, cache, 1, 1, segs_per_io)
        if pr is not None:
            self.call_one(pr)

    # -- use -----------------------------------------------------------------
    @precondition(lambda self: self.prepared)
    @rule(data=st.data())
    def call(self, data):
        self.call_one(data.draw(st.sampled_from(self.prepared)))

    def call_one(self, pr):
        at, sb = pr.at, pr.at.sb
        if at.gone():
            with pytest.raises(pagetax.PagetaxError, match=CLOSED):
                pr.prepared()
            return
        if pr.calls_left == 0:
            with pytest.raises(pagetax.PagetaxError, match="made all its calls"):
                pr.prepared()
            return
        if at.held is not None:
            with pytest.raises(pagetax.PagetaxError, match="holds references from pt_hold"):
                pr.prepared()
            return
        data_area = sb.shadow[at.att.data_offset:at.att.data_offset + at.att.data_bytes]
        pr.prepared()
        pr.calls_left -= 1
        packed = 0
        for ext, buf in zip(pr.exts, pr.bufs):
            n = buf.size
            if "contiguous" in at.flags:        # thread i after threads 0..i-1
                spans = [(packed, n)]
            else:
                spans = zip(ext["off"].tolist(), ext["len"].tolist())
            pos = 0
            for o, ln in spans:
                if pr.op == "read":
                    assert_same(buf[pos:pos + ln], data_area[o:o + ln], f"{at.design} gather")
                else:
                    data_area[o:o + ln] = buf[pos:pos + ln]
                pos += ln
            packed += n
        at.table_changed()   # every grab sets PG_referenced in altmap's descriptors there
        assert_same(sb.view, sb.shadow, f"{at.design} {pr.op}, the backing")
        self.check_counts(at)

    @precondition(lambda self: self.attached)
    @rule(data=st.data())
    def hold(self, data):
        """Hold one I/O's references across the steps that follow, as a
        look at the table mid-I/O would."""
        at = data.draw(st.sampled_from(self.attached))
        ext = _random_extents(data.draw, 0, at.att.data_bytes, 20)
        if at.gone():
            with pytest.raises(pagetax.PagetaxError, match=CLOSED):
                at.att.hold(ext)
            return
        if at.held is not None:
            with pytest.raises(pagetax.PagetaxError, match="already holds references"):
                at.att.hold(ext)
            return
        at.att.hold(ext)
        at.table_changed()
        if "refcounts" in at.flags:
            at.held = expected_counts(ext, design_table(at.design)[1], at.att.data_bytes)
            self.check_counts(at)
        else:
            at.held = np.zeros(0, np.int64)

    @precondition(lambda self: self.attached)
    @rule(data=st.data())
    def unhold(self, data):
        at = data.draw(st.sampled_from(self.attached))
        if at.gone() or at.held is None:
            with pytest.raises(pagetax.PagetaxError, match=CLOSED if at.gone() else
                               "holds no references"):
                at.att.unhold()
            return
        at.att.unhold()
        at.table_changed()
        at.held = None
        self.check_counts(at)
        assert_same(at.sb.view, at.sb.shadow, f"{at.design} release, the backing")

    @staticmethod
    def check_counts(at):
        """Every count is one, plus what a hold still holds."""
        if "refcounts" not in at.flags:
            return
        got = at.att.refcounts()
        want = np.ones(got.size, np.int64)
        if at.held is not None:
            want += at.held * at.att.pin_bias
        assert_same(got, want, f"{at.design} reference counts")

    # -- ending --------------------------------------------------------------
    @rule(data=st.data(), how=st.sampled_from(["close attachment", "close backing",
                                               "forget backing", "forget attachment",
                                               "forget prepared"]))
    def end_something(self, data, how):
        """Close an attachment or a backing, or drop this machine's reference
        to an object and collect: whatever still uses it keeps it alive, or
        finds it closed.  One rule, so endings are a fifth of the steps."""
        verb, what = how.split()
        pool = {"backing": self.backings, "attachment": self.attached,
                "prepared": self.prepared}[what]
        if not pool:
            return
        i = data.draw(st.integers(0, len(pool) - 1))
        if verb == "forget":
            pool.pop(i)
            gc.collect()
        elif what == "attachment":
            pool[i].att.close()
            pool[i].closed = True
        else:
            pool[i].backing.close()
            pool[i].closed = True
        for sb in self.shadows():
            if not sb.table_in_use():   # a detach released what a hold held
                sb.shadow[:sb.reserve] = sb.view[:sb.reserve]
            assert_same(sb.view, sb.shadow, "a backing or its view after an ending")

    def shadows(self):
        """Every backing this machine can still reach, directly or through
        an attachment or a prepared run."""
        found = {id(sb): sb for sb in self.backings}
        found.update((id(at.sb), at.sb) for at in self.attached)
        found.update((id(pr.at.sb), pr.at.sb) for pr in self.prepared)
        return found.values()

    @invariant()
    def views_match_shadows(self):
        for sb in self.shadows():
            assert_same(sb.view, sb.shadow, "a backing between steps")


APIMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("PAGETAX_FUZZ_EXAMPLES", "50")),
    stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
TestAPISequences = APIMachine.TestCase
