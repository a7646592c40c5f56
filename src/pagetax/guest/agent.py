"""The guest side of `pagetax vm`, run as root inside the QEMU guest, in a
chroot of the host's root, by the initramfs's init:

    python -m pagetax.guest.agent /run/pagetax-vm/share/job.json

It turns the guest's raw, label-less NVDIMM namespace into the namespace the
job names, makes and mounts a DAX file system on it (fsdax), runs the job's
command with the DAX paths in its environment, and writes what happened to
the results share, which the host reads once the guest has powered off.
With `memmap` it also reads the free memory around create-namespace: the
kernel's own struct pages for the namespace.

Standard library only, and nothing from pagetax: under TCG every import
costs twenty to forty times what it does on the host.  The host side imports the
constants below, so that host and guest agree on the paths.
"""
import json
import mmap
import os
import subprocess
import sys
import time

# The guest's own tmpfs is mounted over /run, not /tmp: the host's /tmp stays
# visible, and with it a pagetax installed there (a CI clone under /tmp).
SCRATCH = "/run/pagetax-vm"       # the guest's writable tmpfs (TMPDIR is SCRATCH/tmp)
SHARE = SCRATCH + "/share"        # the host's writable 9p folder, mounted here by init
JOB = SHARE + "/job.json"
REPORT = SHARE + "/report.json"
STDOUT = SHARE + "/stdout"        # the command's own output
STDERR = SHARE + "/stderr"
OUT_DIR = SHARE + "/out"          # the command's working folder, copied back to the host
DAX_DIR = SCRATCH + "/dax"        # the fsdax mount point
DEVDAX = "/dev/dax0.0"            # the one device a label-less region's namespace0.0 becomes
NAMESPACE = "namespace0.0"
MARK = "pagetax-vm: done"         # console lines the host times the boot by
GIB = 1 << 30
PAGE = 4096
MAP_SHARED_VALIDATE = 0x03        # not in Python's mmap module
MAP_SYNC = 0x80000
FREE_PAGE_READS = 5               # per side of create-namespace, a settled median
MOUNT_OPTIONS = {"ext4": "dax", "xfs": "dax=always"}


class GuestError(Exception):
    """A step that failed; its message is the one line the host prints."""


def mark(phase):
    """Tell the host (on the console) that a phase ended, at this uptime."""
    with open("/proc/uptime") as f:
        uptime = f.read().split()[0]
    print(f"{MARK} {phase} {uptime}", flush=True)


def _tool(argv):
    """Run a tool; its stdout, or a GuestError with the command and its error."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode:
        # The last line said before any usage dump (mkfs.xfs prints one after its error).
        said = (p.stderr.strip() or p.stdout.strip()).split("Usage:")[0].strip()
        why = said.splitlines()[-1] if said else f"exit {p.returncode}"
        raise GuestError(f"{' '.join(argv)}: {why}")
    return p.stdout


def _meminfo():
    with open("/proc/meminfo") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)}


def _free_pages():
    """Free pages: the buddy allocator's (nr_free_pages, its per-CPU deltas
    folded first) plus those parked on the per-CPU lists, which
    nr_free_pages leaves out and which swing by megabytes."""
    with open("/proc/sys/vm/stat_refresh", "w") as f:
        f.write("1")
    with open("/proc/vmstat") as f:
        buddy = next(int(line.split()[1]) for line in f if line.startswith("nr_free_pages "))
    with open("/proc/zoneinfo") as f:
        per_cpu = sum(int(line.split()[1]) for line in f if line.split()[:1] == ["count:"])
    return buddy, per_cpu


def _settled_free_pages():
    """Free pages after dropping caches (what ndctl and the 9p reads left
    behind is not counted), the median of a few reads a moment apart; the
    reads, and /proc/meminfo to see where memory went."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    reads = []
    for _ in range(FREE_PAGE_READS):
        time.sleep(0.2)
        reads.append(_free_pages())
    return sorted(sum(r) for r in reads)[len(reads) // 2], reads, _meminfo()


def _memmap(before, after):
    """What create-namespace took, from free pages read before and after it."""
    (free_before, reads_before, info_before), (free_after, reads_after, info_after) = before, after
    return {"drop_bytes": (free_before - free_after) * PAGE,
            "free_pages_before": free_before, "free_pages_after": free_after,
            "reads_before": reads_before, "reads_after": reads_after,  # (buddy, per-CPU) pairs
            "meminfo_change_kb": {k: info_after[k] - v for k, v in info_before.items()
                                  if info_after.get(k, v) != v}}


def create_namespace(ns):
    argv = ["ndctl", "create-namespace", "-f", "-e", NAMESPACE, "-m", ns["mode"],
            "--map", ns["map"]]
    if ns["mode"] == "devdax":
        argv += ["--align", ns["align"]]
    _tool(argv)


def describe_namespace():
    """`ndctl list` of the namespace (with its device-DAX device) and of its
    region, from one call: each ndctl costs a TCG guest half a second."""
    listed = json.loads(_tool(["ndctl", "list", "-R", "-N", "-X"]))
    region = listed["regions"][0] if "regions" in listed else listed
    namespace = region.pop("namespaces")[0]
    return {"namespace": namespace, "region": region}


def _check_map_sync(directory, fs):
    """A file system can mount with a DAX option and still not be DAX; MAP_SYNC says."""
    probe = os.path.join(directory, ".pagetax-vm-probe")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, PAGE)
        mmap.mmap(fd, PAGE, flags=MAP_SHARED_VALIDATE | MAP_SYNC).close()
    except OSError as e:
        raise GuestError(f"{fs} on {directory} mounted with -o {MOUNT_OPTIONS[fs]} but refused "
                         f"MAP_SYNC ({e.strerror}): it is not DAX") from None
    finally:
        os.close(fd)
        os.unlink(probe)


def mount_dax(ns, listed):
    """Make the namespace's file system and mount it with DAX at DAX_DIR."""
    dev = f"/dev/{listed['blockdev']}"
    if ns["fs"] == "ext4":
        _tool(["mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "stride=512,stripe_width=512", dev])
    else:
        data, log = "su=2m,sw=1", []
        if listed["size"] < GIB:  # xfsprogs wants a 64 MiB log: it fits only in bigger groups
            data, log = data + ",agcount=2", ["-l", "size=64m"]
        _tool(["mkfs.xfs", "-q", "-f", "-d", data, *log, dev])
    os.makedirs(DAX_DIR, exist_ok=True)
    _tool(["mount", "-o", MOUNT_OPTIONS[ns["fs"]], dev, DAX_DIR])
    _check_map_sync(DAX_DIR, ns["fs"])


def run_command(argv, env):
    """The command's exit status (128 + N for signal N, as a shell says it)."""
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(STDOUT, "wb") as out, open(STDERR, "wb") as err:
        try:
            rc = subprocess.run(argv, cwd=OUT_DIR, env=env, stdout=out, stderr=err).returncode
        except OSError as e:
            raise GuestError(f"{argv[0]}: cannot run it: {e.strerror}") from None
    return 128 - rc if rc < 0 else rc


def serve(job, report):
    """Prepare the namespace, run the command; its exit status."""
    ns = job["namespace"]
    before = _settled_free_pages() if job["memmap"] else None
    create_namespace(ns)
    if before:
        report["memmap"] = _memmap(before, _settled_free_pages())
    report["ndctl"] = described = describe_namespace()
    mark("namespace")
    if not job["argv"]:
        return 0
    env = dict(os.environ)
    del env["PYTHONPATH"]  # the agent's own (see vm.init_script), not the command's
    env.update(job.get("env", {}))
    env["PAGETAX_VM_NAMESPACE"] = json.dumps(dict(ns, ndctl=described))
    if ns["mode"] == "fsdax":
        mount_dax(ns, described["namespace"])
        env["PAGETAX_VM_DAX_DIR"] = DAX_DIR
        mark("mkfs")
    else:
        if not os.path.exists(DEVDAX):
            raise GuestError(f"create-namespace -m devdax made no {DEVDAX}")
        env["PAGETAX_VM_DEVDAX"] = DEVDAX
    try:
        report["status"] = run_command(job["argv"], env)
        mark("command")
    finally:
        if ns["mode"] == "fsdax":
            subprocess.run(["umount", DAX_DIR])
    return report["status"]


def main(argv=None):
    job_path = (sys.argv[1:] if argv is None else argv)[0]
    with open(job_path) as f:
        job = json.load(f)
    mark("python")
    report = {"kernel": os.uname().release}
    status = 1
    try:
        status = serve(job, report)
    except GuestError as e:
        report["error"] = str(e)
    finally:
        with open(REPORT + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(REPORT + ".tmp", REPORT)
    return status


if __name__ == "__main__":
    sys.exit(main())
