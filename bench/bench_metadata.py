"""Metadata memory: descriptor bytes per capacity and per I/O, and the peak
resident memory of attaching a design's table."""
import pagetax
from pagetax import metadata

from . import common


def _table_bytes(design):
    """{"dram": ..., "device": ...}: one design's table on its own 1 GiB backing."""
    with pagetax.Backing.scratch(common.META_BACKING_BYTES) as b, b.attach(design) as att:
        on_device = metadata.model(design).device(common.GIB) > 0
        return {"dram": 0 if on_device else att.meta_bytes,
                "device": att.meta_bytes if on_device else 0}


class TableBytes(common.Benchmark):
    """Descriptor bytes the engine allocates for 1 GiB of backing."""
    params = [common.DESIGNS]
    param_names = ["design"]

    def setup_cache(self):
        # once per commit for both tracks, not once per track and design in
        # a process of its own
        return {d: _table_bytes(d) for d in common.DESIGNS if d in pagetax.DESIGNS}

    def setup(self, tables, design):
        common.skip_unless_available(design)

    def track_dram_bytes_per_gib(self, tables, design):
        return tables[design]["dram"]

    track_dram_bytes_per_gib.unit = "bytes"

    def track_device_bytes_per_gib(self, tables, design):
        return tables[design]["device"]

    track_device_bytes_per_gib.unit = "bytes"


class VectorBytes(common.Benchmark):
    """Vector bytes the engine builds for a 1 MiB I/O of aligned segments."""
    params = [common.DESIGNS, common.META_SEG_SIZES]
    param_names = ["design", "seg_bytes"]
    version = 2  # 2: memcpy builds one entry per segment

    def setup(self, design, seg):
        common.skip_unless_available(design)
        request = metadata.aligned_request(common.MIB, seg)
        with pagetax.Backing.scratch(8 * common.MIB) as b, b.attach(design) as att:
            entries = att.entries(request)
        self.bytes = entries * pagetax.design_entry_bytes(design)

    def track_bytes_per_mib_io(self, design, seg):
        return self.bytes

    track_bytes_per_mib_io.unit = "bytes"


class AttachPeakMemory(common.Benchmark):
    """Peak RSS while a design's table is attached to a 1 GiB tmpfs backing
    (the backing's own resident pages included, alike for every design, and
    the benchmark process's own: under asv's forkserver about 16 MB less
    than under spawn)."""
    params = [common.DESIGNS]
    param_names = ["design"]
    version = 2  # 2: measured in a process forked by asv's forkserver (asv.conf.json)

    def setup(self, design):
        common.skip_unless_available(design)
        self.backing = pagetax.Backing.scratch(common.META_BACKING_BYTES)

    def teardown(self, design):
        self.backing.close()

    def peakmem_attach(self, design):
        self.backing.attach(design).close()
