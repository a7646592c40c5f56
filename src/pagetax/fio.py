"""fio as a peer (`--peers fio`): which of its engines suit a backing, the
command line that matches a row's workload, and fio's figures as a row."""
import json
import os
import shutil
import subprocess

import numpy as np

from . import rows as _rows

ROWS = {"mmap": "fio-mmap", "libpmem": "fio-libpmem", "dev-dax": "fio-dev-dax"}
NAME = "fio"
LOOPS = 2  # fio's first loop pays the first-touch faults of its own mapping


def available():
    return shutil.which("fio")


def engines():
    """The I/O engines this fio was built with (fio --enghelp)."""
    try:
        p = subprocess.run(["fio", "--enghelp"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.strip() for line in p.stdout.splitlines()[1:] if line.strip()}


def plan(kind, map_sync, built):
    """Which fio engines suit a backing, as [(engine, row design)], and a
    one-line note for each that does not run.  mmap runs on any file; fio's
    libpmem engine refuses a file that is not on DAX (it checks
    pmem_is_pmem), so it runs on dax: backings; dev-dax runs on device DAX,
    where the mmap engine cannot size the node."""
    want = ["dev-dax"] if kind == "devdax" else ["mmap"] + (["libpmem"] if map_sync else [])
    out, notes = [], []
    for engine in want:
        if engine in built:
            out.append((engine, ROWS[engine]))
        else:
            notes.append(f"--peers fio: this fio has no {engine} engine (fio --enghelp); "
                         f"no {ROWS[engine]} rows")
    if kind == "devdax":
        notes.append("--peers fio: no fio-mmap rows on device DAX (fio's mmap engine sizes "
                     "a file; a device node has none)")
    elif not map_sync:
        notes.append("--peers fio: no fio-libpmem rows: fio's libpmem engine needs a file on "
                     "DAX (--backing dax:PATH)")
    return out, notes


def core_designs_per_write_cell(cfg):
    """fio adds no design to the core's cells: it runs by itself."""
    return 0


def prepare(cfg, backing):
    """(core designs, runs of its own, warnings): no core designs; an
    (engine, row name) run per engine this backing and fio allow, made
    after the designs are detached (row())."""
    runs, notes = plan_for(backing)
    return [], runs, notes


def plan_for(backing):
    """plan() for this backing with the fio on PATH, or no rows and why."""
    if not available():
        return [], ["--peers fio: fio is not installed (Debian: apt-get install fio); no fio rows"]
    return plan(backing.kind, backing.map_sync, engines())


def command(engine, filename, file_bytes, op, pattern, seg, io_bytes, loops=LOOPS, threads=1,
            cpus=None, hot_bytes=None):
    """fio's command line for one row: the same block size, pattern,
    direction, threads and bytes per thread as pagetax's.

    The region is the whole file from offset 0 (or, for hot, its first
    hot_bytes): fio 3.33's mmap engine maps [0, size) whatever --offset says,
    then remaps for every I/O outside that window, and reads or writes the
    bytes at (offset - --offset), so an --offset or offset_increment would
    make it slow and put its writes where they were not asked for.  Threads
    are fio jobs in one process, each over the whole region, as
    `fio --numjobs` does by default."""
    rw = {"seq": "read", "rand": "randread", "hot": "randread"}[pattern]
    if op == "write":
        rw = rw.replace("read", "write")
    size, extra = file_bytes, []
    if pattern == "hot":
        size, extra = hot_bytes, ["--norandommap"]
    cmd = ["fio", "--name=pagetax", f"--ioengine={engine}", f"--filename={filename}",
           "--offset=0", f"--size={size}", f"--bs={seg}", f"--rw={rw}",
           f"--io_size={io_bytes}", f"--loops={loops}", "--invalidate=0", "--fadvise_hint=0",
           "--randrepeat=1", "--output-format=json", *extra]
    if threads > 1:  # jobs as threads of one process, as pagetax's are
        cmd += [f"--numjobs={threads}", "--thread", "--group_reporting"]
    if cpus:
        cmd += [f"--cpus_allowed={','.join(map(str, sorted(set(cpus))))}",
                "--cpus_allowed_policy=split"]
    return cmd


def run(backing, engine, op, pattern, seg, io_bytes, loops=LOOPS, threads=1, cpus=None,
        hot_bytes=None):
    """One fio run on the same backing (a scratch file through /proc/PID/fd,
    so an unlinked file works too; a device node by its path).  Returns
    (bytes per second, I/Os per second, fio's clat_ns record or None), all
    jobs together.  fio maps the file itself, so its first loop pays
    first-touch faults; `loops` spreads them, as a longer fio job would."""
    filename = backing.path if backing.kind == "devdax" else f"/proc/{os.getpid()}/fd/{backing.fd}"
    cmd = command(engine, filename, backing.size, op, pattern, seg, io_bytes, loops, threads,
                  cpus, hot_bytes)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, pass_fds=(backing.fd,))
    out = p.stdout
    try:
        job = json.loads(out[out.index("{"):])["jobs"][0]
    except (ValueError, KeyError, IndexError, TypeError):  # not fio's JSON
        job = None
    if p.returncode != 0 or job is None or job.get("error"):
        why = (p.stderr or out).strip().splitlines()
        raise OSError(f"fio --ioengine={engine} failed: {why[0] if why else 'no output'}")
    side = job["read" if op == "read" else "write"]
    return float(side["bw_bytes"]), float(side["iops"]), side.get("clat_ns")


# fio's completion-latency percentiles, as its JSON names them
PERCENTILES = {"p50_ns": "50.000000", "p90_ns": "90.000000", "p99_ns": "99.000000",
               "p999_ns": "99.900000"}


def latency(clat, segs_per_io):
    """fio's own per-I/O latency (clat_ns: a sync engine's whole I/O) as a
    row's `latency`, when pagetax's I/O is one segment as fio's is one block
    (--segs-per-io 1); None otherwise, or when fio gave no percentiles.  fio
    reads its own clock and subtracts nothing; its histogram's buckets are
    at most 1/64 of a value wide (FIO_IO_U_PLAT_BITS 6), so no CDF here."""
    pct = (clat or {}).get("percentile") or {}
    if segs_per_io != 1 or not all(v in pct for v in PERCENTILES.values()):
        return None
    return {**{k: float(pct[v]) for k, v in PERCENTILES.items()},
            "max_ns": float(clat["max"]), "min_ns": float(clat["min"]),
            "mean_ns": float(clat["mean"]), "ios": int(clat["N"]),
            "clock_ns_subtracted": 0.0, "resolution_pct": 100.0 / 64,
            "source": "fio's clat_ns, from its run with the median GB/s"}


def row(backing, engine, design, op, pattern, seg, cfg, llc, page_size, cpus):
    """One of fio's engines as a row: same backing, block size, pattern,
    direction, threads (jobs) and bytes per thread (not the same offsets:
    fio draws its own, over the whole file).  fio reports bandwidth and
    IOPS, not phases: the whole time counts as copy, and ns/seg is per
    thread as for the designs."""
    hot = cfg.hot_pages * 4096
    runs = [run(backing, engine, op, pattern, seg, cfg.io_size, threads=cfg.threads, cpus=cpus,
                hot_bytes=hot) for _ in range(cfg.repeat)]
    bw = np.array([r[0] for r in runs]) / 1e9
    iops = np.array([r[1] for r in runs]) / cfg.threads  # per thread
    med = float(np.median(bw))
    median_run = runs[int(np.argsort(bw)[len(bw) // 2])]
    total = cfg.io_size * cfg.threads
    segs = total // seg
    return _rows.row(
        design, op, pattern, seg, cache="fio's own", threads=cfg.threads, cpus=cpus,
        io_bytes=total, segments=segs, rep_total_ns=[total / g for g in bw],
        gbps=med, gbps_best=float(bw.max()), gbps_worst=float(bw.min()),
        spread_pct=100.0 * (1 / bw.min() - 1 / bw.max()) / (1 / med),
        ns_per_seg=1e9 / float(np.median(iops)), ns_per_seg_best=1e9 / float(iops.max()),
        phases=False, phase_ns={"build": 0.0, "copy": total / med, "release": 0.0},
        reps_ns=[[0.0, total / g, 0.0] for g in bw], ios=segs, entries=0, entry_bytes=0,
        working_set={"data_bytes": total, "llc_bytes": llc, "page_size": page_size},
        metadata={"model_dram_bytes": 0, "model_device_bytes": 0, "allocated_bytes": 0,
                  "rss_delta_bytes": 0, "per_io_bytes": 0, "percent": 0.0,
                  "allocated_where": "none", "rss_agrees": True, "rss_note": "",
                  "source": f"fio --ioengine={engine}, one buffer per I/O"},
        timing={}, persistence={"mode": "fio's own"},
        latency=latency(median_run[2], cfg.segs_per_io),
        fio_command=command(engine, "FILE", backing.size, op, pattern, seg, cfg.io_size,
                            LOOPS, cfg.threads, cpus, hot),
        note="fio draws its own offsets over the whole file (jobs share it), maps the "
             "file itself (its first loop pays first-touch faults; 2 loops per run), "
             "times in user space, and runs after every design has detached")
