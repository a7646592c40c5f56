"""`pagetax run` end to end, in a subprocess, as a user runs it."""
import json
import os

import pytest

import pagetax
import pagetax.config
from pagetax import machine
from helpers import SMALL, cli, design_rows


def test_table_splits_ns_per_segment_into_one_threads_phases(tmp_path):
    """build, copy and release cells are the JSON's phase_ns (one thread's)
    per segment of that thread, row by row in the table's order."""
    p = cli("run", *SMALL, "--designs", "vec,page", "--ops", "read", "--threads", "2",
            "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = design_rows(json.loads((tmp_path / "r.json").read_text()))
    rows.sort(key=lambda r: (r["op"], r["pattern"], r["seg_bytes"]))  # the table's order
    lines = [ln.split() for ln in p.stdout.splitlines() if {"vec", "page"} & set(ln.split()[:5])]
    assert len(lines) == len(rows) == 2 * 2 * 2  # designs x patterns x sizes
    for r, line in zip(rows, lines):
        at = line.index(r["design"])
        per_seg = r["segments"] / 2
        want = [f"{r['phase_ns'][k] / per_seg:.1f}" for k in ("build", "copy", "release")]
        assert line[at + 6:at + 9] == want, (r["design"], line)


def test_run_prints_table_and_writes_results(tmp_path):
    p = cli("run", *SMALL, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for design in pagetax.config.DEFAULT_DESIGNS:
        assert design in p.stdout
    assert "GB/s" in p.stdout and "x memcpy" in p.stdout
    files = list((tmp_path / "runs").glob("pagetax-run-*.json"))
    assert len(files) == 1 and f"results: {files[0]}" in p.stderr.replace("\n", "")
    assert not (tmp_path / "results").exists()  # asv's folder: it reads every .json there
    doc = json.loads(files[0].read_text())
    assert doc["schema"] == "pagetax-run/1"
    m = doc["machine"]
    for key in ("cpu_model", "cores", "llc_bytes", "kernel", "thp", "backing", "cache",
                "clock_ns", "mark_ns"):
        assert key in m
    assert m["cache"]["walk"][0]["bytes"] == machine.WALK_FIRST
    assert doc["config"]["segs_per_io"] == 256
    assert m["backing"]["fs_type"] == "tmpfs" and m["backing"]["mapping"]["page_size"]
    assert doc["config"]["size"] == 16 << 20 and doc["config"]["io_size"] == 1 << 20
    rows = design_rows(doc)
    assert len(rows) == len(pagetax.config.DEFAULT_DESIGNS) * 2 * 2 * 2  # designs x ops x patterns x sizes
    refs = [r for r in doc["results"] if r.get("reference")]
    assert len(refs) == 2 * 2 * 2 and all(r["design"] == "reference" for r in refs)
    for r in rows:
        for key in ("design", "op", "pattern", "seg_bytes", "cache", "gbps", "gbps_best",
                    "ns_per_seg", "reps", "phase_ns", "spread_pct", "working_set"):
            assert key in r
        assert r["reps"] == 2 and len(r["rep_total_ns"]) == 2
        assert r["phases"] is True and r["phase_reps"] == 3 and len(r["reps_ns"]) == 3
        assert set(r["phase_ns"]) == {"build", "copy", "release"}
        assert r["clock_ns"] > 0 and isinstance(r["phases_agree"], bool)
        assert r["cold"]["method"] == doc["config"]["cold_method_resolved"]
        assert r["cold"]["probe_lines"] == 64 and r["cold"]["probe_start_ns"] > 0
        assert r["io_bytes"] == 1 << 20 and r["segments"] == (1 << 20) // r["seg_bytes"]
        total = sorted(r["rep_total_ns"])
        assert r["gbps_best"] == pytest.approx((1 << 20) / total[0])
        # totals come from the timed repetitions' wall clock alone
        assert r["ns_per_seg"] == pytest.approx(sum(total) / 2 / r["segments"])
        assert r["ns_per_seg_best"] == pytest.approx(total[0] / r["segments"])
        assert r["gbps_best"] >= r["gbps"] > 0
        if r["design"] == "vec":
            assert r["ratio_vec"] == 1.0
        if r["design"] == "page":
            assert r["entries"] >= r["segments"]
            assert r["working_set"]["descriptor_bytes"] > 0
            # altmap's 2 MiB reserve shrinks every design's data area alike
            assert doc["config"]["data_offset"] == 2 << 20
            assert doc["config"]["data_bytes"] == 14 << 20
            assert r["metadata"]["allocated_bytes"] == (14 << 20) // 4096 * 64
        meta = r["metadata"]
        for key in ("model_dram_bytes", "model_device_bytes", "allocated_bytes",
                    "rss_delta_bytes", "per_io_bytes"):
            assert key in meta
        assert meta["allocated_bytes"] == meta["model_dram_bytes"] + meta["model_device_bytes"]
        assert meta["per_io_bytes"] == r["entries"] * r["entry_bytes"] // r["ios"] == \
            meta["model_per_io_bytes"]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("pagetax")]


def test_json_path_and_no_clobber(tmp_path):
    out = tmp_path / "r.json"
    args = ["run", *SMALL, "--designs", "vec,memcpy", "--ops", "read", "--patterns", "seq",
            "--seg-sizes", "4K", "--json", str(out)]
    assert cli(*args, cwd=tmp_path).returncode == 0
    first = out.read_text()
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 1
    assert p.stderr.strip() == f"pagetax: error: --json {out}: exists; pass --force to replace it"
    assert out.read_text() == first
    assert cli(*args, "--force", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("args, code, message", [
    (["run", "--designs", "vec,folios"], 2, "argument --designs: unknown design 'folios' (choose from vec, pfn, page, memcpy, memcpy-glibc, kernel, huge, altmap, memdesc-inline, folio, page32, memdesc, sgl)"),
    (["run", "--ops", "copy"], 2, "argument --ops: unknown op 'copy'"),
    (["run", "--patterns", "zigzag"], 2, "argument --patterns: unknown pattern 'zigzag'"),
    (["run", "--cache", "lukewarm"], 2, "argument --cache: invalid choice: 'lukewarm'"),
    (["run", "--seg-sizes", "0"], 2, "argument --seg-sizes: segment size '0' must be positive"),
    (["run", "--seg-sizes", "-64"], 2, "argument --seg-sizes: segment size '-64' must be positive"),
    (["run", "--size", "-1G"], 2, "argument --size: --size '-1G' must be positive"),
    (["run", "--size", "12XB"], 2, "argument --size: --size '12XB' has an unknown unit 'XB'"),
    (["run", "--size", "99999999999999999999"], 2, "does not fit in 64 bits"),
    (["run", "--repeat", "0"], 2, "argument --repeat: --repeat must be at least 1 (got 0)"),
    (["run", "--repeat", "many"], 2, "argument --repeat: --repeat 'many' is not a whole number"),
    (["run", "--size", "1M", "--io-size", "2M"], 1, "pagetax: error: --io-size 2097152 is larger than --size 1048576"),
    (["run", "--size", "5000"], 1, "pagetax: error: --size 5000 is not a multiple of 4096"),
    (["run", "--io-size", "1M", "--seg-sizes", "3000"], 1, "is not a multiple of segment size 3000"),
    (["run", "--io-size", "1M", "--seg-sizes", "4M"], 1, "segment size 4194304 is larger than --io-size 1048576"),
    (["run", "--size", "1T", "--io-size", "1M"], 1,
     "pagetax: error: --size 1099511627776 is more than the memory available (MemAvailable"),
    (["run", "--backing", "/nonexistent-dir/x", "--size", "1M", "--io-size", "64K"], 1,
     "pagetax: error: /nonexistent-dir/x: parent directory /nonexistent-dir does not exist"),
    (["run", "--backing", "/", "--size", "1M", "--io-size", "64K"], 1, "/: is a directory"),
    (["run", "--json", "/proc/nope/r.json"], 1,
     "pagetax: error: --json /proc/nope/r.json: folder /proc/nope does not exist; create it first"),
    (["run", "--json", "/nonexistent-dir/sub/r.json"], 1,
     "--json /nonexistent-dir/sub/r.json: folder /nonexistent-dir/sub does not exist"),
    (["run", "--backing", "/etc/hostname", "--size", "1M", "--io-size", "64K"], 1,
     "does not look like a benchmark file (it is small, another user's, or a system file); "
     "check the path: pagetax will not grow or write it"),
    (["run", "--json", "/proc/r.json"], 1, "pagetax: error: --json /proc/r.json: cannot write there"),
    (["bogus"], 2, "argument COMMAND: invalid choice: 'bogus'"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, code, message):
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == code
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert message in p.stderr
    assert not (tmp_path / "runs").exists()


def test_existing_backing_with_data_is_not_written(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"\x5a" * (4 << 20))
    args = ("run", "--backing", str(f), "--size", "4M", "--io-size", "64K", "--seg-sizes", "4K")
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 1
    assert "already holds data, so pagetax only reads it; drop 'write' from --ops or pass --overwrite" in p.stderr
    p = cli(*args, "--ops", "read", cwd=tmp_path)
    assert p.returncode == 1
    assert ("is read-only to pagetax, and altmap keeps its descriptors on the backing; "
            "drop altmap from --designs or pass --overwrite") in p.stderr
    p = cli(*args, "--ops", "read", "--designs", "vec,page,huge,memcpy,kernel",
            "--repeat", "1", "--no-progress", "--json", str(tmp_path / "r.json"),
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f.read_bytes() == b"\x5a" * (4 << 20)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["machine"]["backing"]["kind"] == "file"
    assert doc["machine"]["backing"]["writable"] is False


@pytest.mark.parametrize("asked,per_io", [((), 256), (("--segs-per-io", "64"), 64),
                                           (("--segs-per-io", "all"), 0),
                                           (("--segs-per-io", "0"), 0)])
def test_ios_are_a_bios_256_segments_unless_asked(tmp_path, asked, per_io):
    """By default a repetition is cut into I/Os of at most 256 segments, a
    bio's BIO_MAX_VECS; `all` (or 0) keeps one I/O of the whole repetition."""
    p = cli("run", "--size", "16M", "--io-size", "1M", "--seg-sizes", "64",
            "--patterns", "rand", "--ops", "read", "--designs", "vec,page,memcpy-glibc",
            *asked, "--repeat", "1", "--no-progress", "--json", "r.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["config"]["segs_per_io"] == per_io
    ios = 16384 // per_io if per_io else 1
    for r in design_rows(doc):
        assert r["ios"] == ios
        one_entry = r["design"] == "memcpy-glibc"
        assert r["entries"] == (ios if one_entry else 16384)
        assert r["metadata"]["per_io_bytes"] == r["metadata"]["model_per_io_bytes"] == \
            (16 if one_entry else 16384 // ios * 16)
        assert (r["latency"] is not None) == bool(per_io)
    title = " ".join(p.stdout.split())
    assert (f"I/Os of {per_io} segments" if per_io else "one I/O per repetition") in title
    assert "per sysfs" in title


def test_a_missing_json_folder_is_refused_not_created(tmp_path):
    p = cli("run", *SMALL, "--json", str(tmp_path / "no" / "such" / "r.json"), cwd=tmp_path)
    assert p.returncode == 1 and "folder" in p.stderr and "does not exist" in p.stderr
    assert not (tmp_path / "no").exists()


def test_no_overwrite_hint_for_a_file_that_is_not_plainly_scratch(tmp_path):
    small = tmp_path / "notes.txt"
    small.write_text("a user's file")
    p = cli("run", *SMALL, "--backing", str(small), cwd=tmp_path)
    assert p.returncode == 1 and "--overwrite" not in p.stderr
    assert "check the path: pagetax will not grow or write it" in p.stderr
    assert small.read_text() == "a user's file"


def test_no_arguments_lists_the_commands(tmp_path):
    p = cli(cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == ""
    for command in ("run", "metadata", "compare", "plot", "report", "vm"):
        assert f"    {command} " in p.stdout, p.stdout


def test_result_files_are_written_as_the_umask_allows(tmp_path):
    """mkstemp's 0600 kept a result from a web server and from colleagues."""
    old = os.umask(0o022)
    try:
        pagetax.report.write_json({"x": 1}, str(tmp_path / "a.json"))
        os.umask(0o077)
        pagetax.report.write_json({"x": 1}, str(tmp_path / "b.json"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


# -- the next steps after a run (issue 25) ------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    p = cli("run", *SMALL, "--designs", "vec,page", "--json", str(d / "r.json"), cwd=d)
    assert p.returncode == 0, p.stderr
    assert f"next: pagetax report {d / 'r.json'}" in p.stderr
    return d / "r.json"


def test_a_run_names_the_pagetax_that_made_it(small_run, tmp_path):
    from pagetax import version
    doc = json.loads(small_run.read_text())
    assert doc["pagetax"] == version.build_info() and doc["pagetax"]["version"] == \
        pagetax.__version__
    p = cli("--version", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == version.text()
    assert p.stdout.startswith(f"pagetax {pagetax.__version__} (commit ")


def test_report_and_plot_write_beside_the_run_and_never_over_a_folder(small_run, tmp_path):
    run = tmp_path / "r.json"
    run.write_bytes(small_run.read_bytes())
    p = cli("report", str(run), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = tmp_path / "r-report" / "index.html"
    assert page.exists() and "Measured by pagetax " in page.read_text()
    again = cli("report", str(run), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == (f"pagetax: error: {tmp_path / 'r-report'} exists and holds "
                                    "files; pass --overwrite to replace them (or -o to write "
                                    "elsewhere)")
    assert cli("report", str(run), "--overwrite", cwd=tmp_path).returncode == 0
    p = cli("plot", str(run), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r-plots" / "ratio_vec.png").exists()


def test_matplotlib_comes_with_the_readme_install():
    from importlib.metadata import requires
    assert any(r.split(">")[0].split(";")[0].strip() == "matplotlib"
               for r in requires("pagetax") if "extra ==" not in r)


def test_python_m_pagetax_in_a_source_tree_without_a_core_says_why(tmp_path):
    """A clone's root before its package is built: one line, not a traceback."""
    import shutil
    import subprocess
    import sys
    tree = tmp_path / "clone"
    shutil.copytree(os.path.dirname(pagetax.__file__), tree / "pagetax",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tree / "setup.py").write_text("")
    p = subprocess.run([sys.executable, "-m", "pagetax", "run", "--help"], cwd=tree,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("pagetax: error: this is the source tree's pagetax/, which has "
                               "no compiled core") and len(p.stderr.strip().splitlines()) == 1


def test_the_table_marks_rows_whose_phases_do_not_add_up(small_run):
    from rich.console import Console
    from pagetax import report
    doc = json.loads(small_run.read_text())
    assert doc["config"]["phase_reps"] == 3   # the split is a median by default
    doc["results"][0]["phases_agree"] = False
    for r in doc["results"][1:]:
        r["phases_agree"] = True
    console = Console(width=200, record=True)
    console.print(report.table(doc))
    text = console.export_text()
    assert f"{doc['results'][0]['ns_per_seg']:.1f}*" in text
    assert text.count("*") == 1 + text.count("(* =")   # the row's mark, and the caption's key


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_run_table_fits_a_terminal_by_leaving_columns_out(small_run, width):
    """No figure is cut short: columns go, by priority, and the caption
    names them; off a terminal every column stays."""
    import io
    from rich.console import Console
    from pagetax import report
    doc = json.loads(small_run.read_text())
    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
    report.print_table(doc, console)
    text = console.export_text()
    assert "…" not in text
    body = [line for line in text.splitlines() if line.strip().startswith(("read", "write"))]
    assert body and max(len(line.rstrip()) for line in body) <= width
    caption = " ".join(text.split())
    assert f"left out to fit {width} columns: best, spread" in caption
    piped = Console(width=width, record=True, file=io.StringIO())   # not a terminal
    report.print_table(doc, piped)
    whole = piped.export_text()
    assert "left out" not in whole and "x memcpy" in whole and "…" not in whole


def test_the_metadata_table_fits_a_terminal_too():
    import io
    from rich.console import Console
    from pagetax import metadata, report
    rows = metadata.table(metadata.SEED_CAPACITY)
    console = Console(width=80, force_terminal=True, record=True, file=io.StringIO())
    report.print_fitted(console, lambda leave_out: report.metadata_table(
        metadata.SEED_CAPACITY, rows, leave_out), report.METADATA_TABLE_DROP)
    text = console.export_text()
    assert "…" not in text and "6,250,000,000" in text
    assert "left out to fit 80 columns: 64B segs, 4K segs" in " ".join(text.split())


def test_the_page_size_warning_says_asked_only_when_it_was(tmp_path):
    from pagetax import runner
    asked = runner.page_size_warning(pagetax.config.RunConfig(page_size="2M"), "mixed", "smaps")
    assert asked.startswith("asked for 2M pages, but the kernel mapped the backing with mixed")
    cfg = cli_config(tmp_path, "run", "--designs", "vec")   # no --page-size
    assert cfg.page_size == "4K" and cfg.page_size_asked is False
    unasked = runner.page_size_warning(cfg, "mixed", "smaps")
    assert unasked == ("the kernel mapped the backing with mixed pages (smaps); the results say "
                       "mixed (--page-size asks for 4K or 2M)")


def cli_config(tmp_path, *argv):
    from pagetax import cli as _cli
    args = _cli.build_parser("run").parse_args(list(argv))
    from pagetax.commands import run as run_command
    return run_command.config(args)
