"""Plots and the report page, the page checked in a real headless browser."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from helpers import SMALL, cli

pytest.importorskip("matplotlib")

AWAY = tempfile.gettempdir()  # from the source tree, whose pagetax/ may have no compiled core


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    p = cli("run", *SMALL, "--repeat", "1", "--designs", "vec,page,memcpy", "--plot",
            "--json", str(d / "r.json"), cwd=d)
    assert p.returncode == 0, p.stderr
    for name in ("throughput", "ns_per_seg", "metadata"):  # run --plot drew them
        assert (d / "r-plots" / f"{name}.png").stat().st_size > 10_000
    return d / "r.json"


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_plot_command(run_file, tmp_path, fmt, magic):
    p = cli("plot", str(run_file), "-o", str(tmp_path / "p"), "--format", fmt, cwd=AWAY)
    assert p.returncode == 0, p.stderr
    for name in ("throughput", "ns_per_seg", "metadata"):
        data = (tmp_path / "p" / f"{name}.{fmt}").read_bytes()
        assert data.startswith(magic)
    if fmt == "svg":
        assert "<svg" in (tmp_path / "p" / "throughput.svg").read_text()


def test_plot_errors(tmp_path):
    p = cli("plot", str(tmp_path / "none.json"), "-o", str(tmp_path), cwd=AWAY)
    assert p.returncode == 1 and "none.json: No such file or directory" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium (Debian: apt-get install chromium)")
def test_report_page_opens_from_disk_in_chromium(run_file, tmp_path):
    p = cli("report", str(run_file), "-o", str(tmp_path / "rep"), cwd=AWAY)
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
