"""The peers: the tools pagetax compares its designs with, one module each,
and their registry.  A peer module declares its NAME and:

  prepare(cfg, backing)  -> (core designs, runs of its own, warnings): the
      peer designs the core runs beside pagetax's in every write cell, and
      the runs the peer makes by itself once the designs are detached;
  core_designs_per_write_cell(cfg): how many the first are, for progress;
  row(backing, run, op, pattern, seg, cfg, llc, page_size, cpus): the
      result row of one of its own runs (a peer with such runs only).

The runner walks this registry; it never tests a peer's name."""
from . import fio, libpmem

# The registry: one line per peer, in the order `--peers` lists them.
REGISTRY = {peer.NAME: peer for peer in (libpmem, fio)}
NAMES = tuple(REGISTRY)
