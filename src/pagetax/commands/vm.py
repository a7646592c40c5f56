"""`pagetax vm`: pagetax, its tests, `pagetax kernel` or your own command in a
throw-away QEMU guest on an emulated NVDIMM; the memmap per namespace mode."""
import argparse
import json
import os
import sys
import tempfile
import time

from .. import report
from ..errors import PagetaxError
from ..guest import agent
from ..guest.host import check_tools, choose_accelerator, dax_tests, qemu_version
from ..guest.lifecycle import run as run_guest
from ..guest.memmap import memmap_figures
from ..guest.namespace import (ALIGNS, FILE_SYSTEMS, KERNEL_NAMESPACES, MAPS, MEMMAP_NAMESPACES,
                               MODES, TEST_NAMESPACES, Namespace, VmError, check_sizes)
from ..sizes import format_size
from .options import Parser, json_output, say, seconds, size

NAME = "vm"


def add_parser(sub, detailed):
    v = sub.add_parser("vm", help="run pagetax in a QEMU guest on an emulated NVDIMM (DAX)",
                       description="Boot a throw-away QEMU guest whose emulated NVDIMM becomes "
                       "an fsdax or devdax namespace, and run in it the host's own Python and "
                       "pagetax (the host's root is shared read-only over 9p).  One guest per "
                       "namespace.  Needs: apt-get install qemu-system-x86 linux-image-amd64 "
                       "busybox-static ndctl xfsprogs e2fsprogs kmod.", add_help=detailed)
    if detailed:
        add_subcommands(v)
    return v


def vm_namespace(text):
    try:
        return Namespace.from_label(text)
    except VmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_subcommands(v):
    vsub = v.add_subparsers(dest="vm_command", metavar="VM_COMMAND", parser_class=Parser)
    vsub.required = True
    r = vsub.add_parser("run", help="pagetax run inside a guest, on a DAX namespace",
                        description="Run `pagetax run` inside a guest with its backing on the "
                        "namespace: a new file on the DAX mount (fsdax) or /dev/dax0.0, "
                        "written (devdax).  The result file comes back with a `guest` object. "
                        "pagetax run's own options go after --; its --size must fit the "
                        "namespace: a 1G NVDIMM gives 1022 MiB with --map=mem and 1006 MiB "
                        "with --map=dev, less what a file system keeps.")
    _vm_namespace_options(r)
    _vm_guest_options(r, timeout=600)
    json_output(r, "result file (default: runs/pagetax-run-TIME.json)")
    r.add_argument("run_args", nargs="*", metavar="-- RUN_ARGS", help="pagetax run's options")

    x = vsub.add_parser("exec", help="your own command inside a guest, on a DAX namespace",
                        description="Run CMD (after --) as root inside a guest on the namespace, "
                        "with the host's root shared read-only: its programs, its Python.  The "
                        "command finds the namespace in PAGETAX_VM_DAX_DIR (an fsdax mount) or "
                        "PAGETAX_VM_DEVDAX (a device), described in PAGETAX_VM_NAMESPACE (JSON); "
                        "it starts in a writable folder whose files come back to --output.  The "
                        "exit status is the command's.")
    _vm_namespace_options(x)
    _vm_guest_options(x, timeout=600)
    x.add_argument("--output", "-o", metavar="DIR",
                   help="where the command's files come back (default: a new "
                   "pagetax-vm-exec-TIME folder here); must be new or empty")
    x.add_argument("command_argv", nargs="+", metavar="-- CMD", help="the command and its "
                   "arguments")

    t = vsub.add_parser("test", help="pytest's tests/test_dax_guest.py inside guests",
                        description="Run tests/test_dax_guest.py of this source tree with pytest, "
                        "in one guest per namespace.  The tests find the DAX paths in "
                        "PAGETAX_VM_DAX_DIR (fsdax) or PAGETAX_VM_DEVDAX (devdax), and the "
                        "namespace in PAGETAX_VM_NAMESPACE (JSON).  The exit status is the "
                        "first failing guest's pytest status, else 0.")
    t.add_argument("--namespace", type=vm_namespace, action="append", metavar="LABEL",
                   help="a namespace to test in, repeatable (default: "
                   f"{', '.join(ns.label for ns in TEST_NAMESPACES)})")
    _vm_guest_options(t, timeout=900)
    t.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="pytest's options")

    k = vsub.add_parser("kernel", help="pagetax kernel inside guests, on fsdax and devdax pages",
                        description="Run `pagetax kernel` in one guest per namespace (fsdax "
                        "on ext4, devdax at 2M), with 2 MiB of the namespace's pages as a "
                        "buffer beside 4 KiB and THP ones and the function tracer on: "
                        "whether the kernel can pin ZONE_DEVICE pages for I/O, through which "
                        "functions, with the bytes checked.  Under TCG the timings mean "
                        "nothing.  --kernel sets guest kernels side by side.")
    _vm_guest_options(k, timeout=600)
    json_output(k, "also write every guest's figures as JSON")
    k.add_argument("kernel_args", nargs="*", metavar="-- KERNEL_ARGS",
                   help="pagetax kernel's options (default in a TCG guest: --rounds 5 "
                   "--calls 5)")

    m = vsub.add_parser("memmap", help="the kernel's struct pages per namespace mode, measured",
                        description="One fresh guest per mode (fsdax --map=mem and dev, devdax "
                        "--map=mem at 4k and 2M, devdax --map=dev): the drop in free memory "
                        "across create-namespace, beside pagetax's model of the matching "
                        "design.")
    _vm_guest_options(m, timeout=300)
    json_output(m)


def _vm_namespace_options(p):
    p.add_argument("--mode", choices=MODES, default="fsdax",
                   help="fsdax (a file on a DAX file system) or devdax (default: fsdax)")
    p.add_argument("--map", choices=MAPS, default="mem",
                   help="the namespace's struct pages in DRAM (mem) or on itself (dev) "
                   "(default: mem)")
    p.add_argument("--fs", choices=FILE_SYSTEMS, help="fsdax's file system (default: ext4)")
    p.add_argument("--align", choices=ALIGNS, help="devdax's page alignment (default: 2M)")


def _vm_guest_options(p, timeout):
    p.add_argument("--capacity", type=size("--capacity"), default=1 << 30,
                   help="the NVDIMM's size, a multiple of 2M (default: 1G)")
    p.add_argument("--memory", type=size("--memory"), default=2 << 30,
                   help="the guest's RAM (default: 2G)")
    p.add_argument("--timeout", type=seconds, default=timeout, metavar="S",
                   help=f"seconds each guest may take, boot to power-off (default: {timeout})")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show each guest's console as it comes")
    p.add_argument("--kernel", metavar="VERSION",
                   help="the guest's kernel, as /boot/vmlinuz-VERSION names it, with its "
                   "modules in /lib/modules (default: the newest there)")


def _vm_guest(args, accel, ns, argv, **kw):
    """One guest, and one line of how long each of its phases took."""
    say(f"pagetax: vm: booting a guest for {ns.label} ({format_size(args.capacity)} NVDIMM)")
    result = run_guest(ns, argv, capacity=args.capacity, memory=args.memory, timeout=args.timeout,
                       accel=accel, kernel=args.kernel, **kw,
                       on_console=(lambda line: say(f"console: {line}")) if args.verbose else None)
    if result.accelerator != accel[0]:
        say(f"pagetax: vm: {result.accelerator_reason}")
    phases = ", ".join(f"{phase} {s:.1f}" for phase, s in result.phases)
    say(f"pagetax: vm: {ns.label} under {result.accelerator}, seconds: {phases}; "
        f"{sum(s for _, s in result.phases):.1f} in all")
    return result


def _echo_guest(result, host_paths=False):
    """The guest command's output: stdout as it is, stderr line by line,
    marked.  With host_paths, the lines naming a guest-side result file are
    left out: the file comes back, and the host's line names it."""
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    for line in result.stderr.splitlines():
        if host_paths and agent.SHARE in line and line.startswith(("results: ", "next: ")):
            continue
        say(f"guest: {line}")


def _vm_exec(args, out, accel):
    ns = Namespace(args.mode, args.map, fs=args.fs, align=args.align)
    outdir = args.output or f"pagetax-vm-exec-{time.strftime('%Y%m%d-%H%M%S')}"
    if os.path.exists(outdir) and (not os.path.isdir(outdir) or os.listdir(outdir)):
        raise PagetaxError(f"--output {outdir} exists and is not an empty folder")
    os.makedirs(outdir, exist_ok=True)
    result = _vm_guest(args, accel, ns, list(args.command_argv), output_dir=outdir)
    _echo_guest(result)
    say(f"pagetax: vm exec: {ns.label}: exited {result.status}; its files: "
        f"{os.path.abspath(outdir)} ({len(result.files)})")
    return result.status


def _vm_kernel(args, out, accel):
    from ..kernel import table
    if args.json:
        report.check_json_path(args.json, args.force)
    for arg in args.kernel_args:
        if arg.split("=", 1)[0] in ("--dax", "--json", "--overwrite"):
            raise PagetaxError(f"vm kernel sets {arg.split('=', 1)[0]} itself: leave it out")
    extra = args.kernel_args or (["--rounds", "5", "--calls", "5"] if accel[0] == "tcg" else [])
    docs, status = [], 0
    for ns in KERNEL_NAMESPACES:
        dax = [f"dax:{agent.DAX_DIR}/pagetax-kernel.dat"] if ns.mode == "fsdax" else \
            [f"devdax:{agent.DEVDAX}", "--overwrite"]
        argv = [sys.executable, "-m", "pagetax", "kernel", "--buffers", "4K,THP", "--dax", *dax,
                "--trace", "--json", f"{agent.OUT_DIR}/kernel.json", *extra]
        with tempfile.TemporaryDirectory(prefix="pagetax-vm-files-") as files:
            result = _vm_guest(args, accel, ns, argv, output_dir=files)
            for line in result.stderr.splitlines():
                say(f"guest: {line}")
            made = os.path.join(files, "kernel.json")
            if os.path.exists(made):
                with open(made) as f:
                    doc = json.load(f)
                doc["guest"] = result.labels()
                table.print_all(doc, out, report.print_wide)
                docs.append(doc)
        say(f"pagetax: vm kernel: {ns.label}: pagetax kernel exited {result.status}")
        status = status or result.status
    if args.json and docs:
        path = report.write_json({"schema": "pagetax-vm-kernel/1", "runs": docs}, args.json,
                                 force=args.force)
        say(f"kernel: {path}")
    return status


def _vm_run(args, out, accel):
    ns = Namespace(args.mode, args.map, fs=args.fs, align=args.align)
    for arg in args.run_args:
        if arg.split("=", 1)[0] in ("--backing", "--json"):
            raise PagetaxError(f"vm run sets {arg.split('=', 1)[0]} itself: leave it out")
    path = report.check_json_path(args.json or report.default_path(), args.force)
    backing = [f"dax:{agent.DAX_DIR}/pagetax.dat"] if ns.mode == "fsdax" else \
        [f"devdax:{agent.DEVDAX}", "--overwrite"]
    argv = [sys.executable, "-m", "pagetax", "run", "--backing", *backing,
            "--json", f"{agent.OUT_DIR}/run.json", "--no-progress", *args.run_args]
    with tempfile.TemporaryDirectory(prefix="pagetax-vm-files-") as files:
        result = _vm_guest(args, accel, ns, argv, output_dir=files)
        _echo_guest(result, host_paths=True)
        made = os.path.join(files, "run.json")
        if os.path.exists(made):  # also after a failure, when the run wrote partial results
            with open(made) as f:
                doc = json.load(f)
            doc["guest"] = result.labels()
            say(f"results: {report.write_json(doc, path, force=args.force)}")
    return result.status


def _vm_test(args, out, accel):
    # -rs: why each test skipped (a devdax guest skips the fsdax tests by design)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", dax_tests(),
            *args.pytest_args]
    status = 0
    for ns in args.namespace or TEST_NAMESPACES:
        result = _vm_guest(args, accel, ns, argv)
        _echo_guest(result)
        say(f"pagetax: vm test: {ns.label}: pytest exited {result.status}")
        status = status or result.status
    return status


def _vm_memmap(args, out, accel):
    from rich import box
    from rich.table import Table

    if args.json:
        report.check_json_path(args.json, args.force)
    rows = [memmap_figures(_vm_guest(args, accel, ns, [], memmap=True))
            for ns in MEMMAP_NAMESPACES]
    mib = 1 << 20
    t = Table(title=f"struct pages for a {format_size(args.capacity)} NVDIMM region, MiB: "
              "measured in a fresh guest per mode, and pagetax's model",
              caption="DRAM: the drop in free pages (buddy and per-CPU lists, caches dropped) "
              "across ndctl create-namespace; device: region size - namespace size (map=mem "
              "too gives up 2 MiB: the 8 KiB info block, padded to the 2 MiB alignment); "
              "model: pagetax/metadata.py at the region's capacity",
              header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("create-namespace", "namespace bytes", "DRAM", "device", "model",
                 "model DRAM", "model dev", "DRAM - model"):
        t.add_column(name, justify="left" if name in ("create-namespace", "model")
                     else "right", no_wrap=True)
    for r in rows:
        t.add_row(r["ndctl"], f"{r['namespace_bytes']:,}", f"{r['dram_bytes'] / mib:.2f}",
                  f"{r['device_bytes'] / mib:.2f}", r["model"],
                  f"{r['model_dram_bytes'] / mib:.2f}", f"{r['model_device_bytes'] / mib:.2f}",
                  f"{(r['dram_bytes'] - r['model_dram_bytes']) / mib:+.2f}")
    report.print_wide(out, t, 125)
    report.print_memmap_notes(out, rows)
    if args.json:
        doc = {"schema": "pagetax-vm-memmap/1", "capacity_bytes": args.capacity, "rows": rows}
        say(f"memmap: {report.write_json(doc, args.json, force=args.force)}")
    return 0


def run(args, out, err):
    host = check_tools(args.kernel)  # before any guest boots: a missing tool is one line
    check_sizes(args.capacity, args.memory)
    accel = choose_accelerator()
    say(f"pagetax: vm: QEMU {qemu_version(host.qemu)}, kernel {host.kernel_version}, "
        f"{accel[0]}: {accel[1]}")
    return {"run": _vm_run, "test": _vm_test, "kernel": _vm_kernel, "exec": _vm_exec,
            "memmap": _vm_memmap}[args.vm_command](args, out, accel)
