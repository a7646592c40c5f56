"""Plots and the report page, the page checked in a real headless browser."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("matplotlib")

SMALL = ["--size", "16M", "--io-size", "1M", "--seg-sizes", "64,4K", "--repeat", "1",
         "--designs", "vec,page,memcpy", "--no-progress"]


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    p = subprocess.run([sys.executable, "-m", "pagetax", "run", *SMALL, "--plot",
                        "--json", str(d / "r.json")], cwd=d, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    for name in ("throughput", "ns_per_seg", "metadata"):  # run --plot drew them
        assert (d / "r-plots" / f"{name}.png").stat().st_size > 10_000
    return d / "r.json"


def _cli(*args):
    # Away from the source tree, whose pagetax/ has no compiled core.
    return subprocess.run([sys.executable, "-m", "pagetax", *args], cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_plot_command(run_file, tmp_path, fmt, magic):
    p = _cli("plot", str(run_file), "-o", str(tmp_path / "p"), "--format", fmt)
    assert p.returncode == 0, p.stderr
    for name in ("throughput", "ns_per_seg", "metadata"):
        data = (tmp_path / "p" / f"{name}.{fmt}").read_bytes()
        assert data.startswith(magic)
    if fmt == "svg":
        assert "<svg" in (tmp_path / "p" / "throughput.svg").read_text()


def test_plot_errors(tmp_path):
    p = _cli("plot", str(tmp_path / "none.json"), "-o", str(tmp_path))
    assert p.returncode == 1 and "none.json: No such file or directory" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium (Debian: apt-get install chromium)")
def test_report_page_opens_from_disk_in_chromium(run_file, tmp_path):
    p = _cli("report", str(run_file), "-o", str(tmp_path / "rep"))
    assert p.returncode == 0, p.stderr
    page = tmp_path / "rep" / "index.html"
    # The browser must not inherit the sanitizer runtime the CI pass preloads.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<h1>pagetax report</h1>" in html and "<h2>Machine</h2>" in html
    assert html.count('src="data:image/png;base64,') == 3
    doc = json.loads(run_file.read_text())
    assert html.count("<tr>") >= len(doc["results"]) + 1
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1200,900", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, env=env)
    assert shot.stat().st_size > 20_000  # rendered, not a blank page
