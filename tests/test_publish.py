"""`pagetax publish`: asv's site of the committed results, served by a local
web server and read in headless chromium with no network: the benchmark
list, the graphs' plotted points against the result files, and every
request the pages made.  Then two machines merged on one site."""
import base64
import contextlib
import functools
import hashlib
import http.server
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import cli
from pagetax import publish
from pagetax.errors import PagetaxError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CHROMIUM = shutil.which("chromium")
SPEED = "bench_copy.Gather.time_gather"
METADATA = "bench_metadata.TableBytes.track_dram_bytes_per_gib"


def machine_dirs(results):
    return sorted(p.parent for p in results.glob("*/machine.json"))


needs_asv = pytest.mark.skipif(importlib.util.find_spec("asv") is None,
                               reason="asv is not installed (pip install '.[test]' brings it)")
needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="no chromium (Debian: apt-get install "
                                    "chromium)")
needs_history = pytest.mark.skipif(
    not (ROOT / ".git").exists() or not machine_dirs(RESULTS),
    reason="publishing needs results/ and the git history its commits are in (a clone)")


def publish_site(config, html_dir, cwd):
    p = cli("publish", "--config", str(config), "--html-dir", str(html_dir), cwd=cwd, timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"published: {html_dir}" in p.stderr
    assert not os.path.exists(publish.publishing_marker(str(html_dir)))   # a whole site
    return html_dir


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The committed results/, published as a user would."""
    d = tmp_path_factory.mktemp("site")
    return publish_site(ROOT / "asv.conf.json", d / "html", cwd=d)


class _Server:
    """A static web server on 127.0.0.1 in a thread; `paths` are the paths it served."""

    def __init__(self, directory):
        self.paths = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                server.paths.append(self.path)
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def served(directory):
    server = _Server(directory)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from cdp import Chromium
    b = Chromium(CHROMIUM, tmp_path_factory.mktemp("profile"), width=1366, height=768)
    yield b
    b.close()


def open_graph(browser, url, benchmark):
    """The series flot plotted on BENCHMARK's page: [{label, data: [[x, y]]}].
    about:blank first, so that the page loads anew and no earlier plot counts."""
    browser.goto("about:blank")
    browser.goto(f"{url}index.html#{benchmark}")
    plot = "$('#main-graph').data('plot')"
    browser.wait_for(f"$('#title').text() === {json.dumps(benchmark)} && {plot} && "
                     f"{plot}.getData().length > 0", f"the graph of {benchmark}")
    return browser.evaluate(f"{plot}.getData().map(s => ({{label: s.label, data: s.data}}))")


def selector_buttons(browser, panel_parent, heading, active_only=False):
    """The buttons of a value selector panel asv draws (machine, cpu, ...)."""
    button = ".btn.active" if active_only else ".btn"
    return browser.evaluate(
        f"$('{panel_parent} .panel').filter(function() {{ return $(this).find('.panel-heading')"
        f".text().trim() === {json.dumps(heading)} }}).find('{button}').map(function() "
        "{ return $(this).text() }).get()")


@functools.lru_cache(maxsize=None)
def commits_on_head():
    """The commits asv plots with asv.conf.json's "branches": ["HEAD"]."""
    return frozenset(subprocess.run(["git", "rev-list", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.split())


def expected_points(results, benchmark):
    """From asv's result files: {(machine, frozenset of "param-value")}:
    {commit: value} for every non-null value of BENCHMARK.  As asv does, it
    leaves out results of another version of the benchmark than
    benchmarks.json's, and of commits on no branch asv plots (a local run of
    a commit since rebased away)."""
    suite = json.loads((results / "benchmarks.json").read_text())[benchmark]
    out = {}
    for machine in machine_dirs(results):
        name = json.loads((machine / "machine.json").read_text())["machine"]
        for f in machine.glob("*.json"):
            if f.name == "machine.json":
                continue
            doc = json.loads(f.read_text())
            if doc["commit_hash"] not in commits_on_head():
                continue
            result = doc["results"].get(benchmark)
            if result is None or result[doc["result_columns"].index("version")] != suite["version"]:
                continue
            values, params = result[:2]
            for combo, value in zip(itertools.product(*params), values):
                if value is None:
                    continue
                # asv's label drops the quotes of a string parameter's repr
                key = frozenset(f"{n}-{v.strip(chr(39))}"
                                for n, v in zip(suite["param_names"], combo))
                out.setdefault((name, key), {})[doc["commit_hash"]] = value
    return out


def assert_plot_matches_results(series, site_dir, results, benchmark):
    """Each plotted series holds exactly the result files' values at their
    commits; returns {machine: number of series}.  asv labels a series
    "param-value; ..." and adds "machine-NAME" when the site has several."""
    index = json.loads((site_dir / "index.json").read_text())
    machines = index["params"]["machine"]
    expected = expected_points(results, benchmark)
    per_machine = {}
    for s in series:
        parts = set(s["label"].split("; "))
        named = {p for p in parts if p.startswith("machine-")}
        machine = named.pop()[len("machine-"):] if named else machines[0]
        # a parameter value a machine never measured (a design added since)
        # is a line of nulls, which draws nothing
        points = {index["revision_to_hash"][str(x)]: y for x, y in s["data"] if y is not None}
        assert points == expected.get((machine, frozenset(parts - {f"machine-{machine}"})), {}), \
            s["label"]
        per_machine[machine] = per_machine.get(machine, 0) + 1
    return per_machine


@needs_asv
@needs_history
def test_publish_points_every_cdn_url_at_bundled_copies(site):
    pages = list(site.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "error.html"}
    loading_tags = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
    local = []
    for page in pages:
        for tag in loading_tags.findall(page.read_text()):
            assert not re.search(r"""(src|href)=["'](https?:)?//""", tag), f"{page.name}: {tag}"
            assert "integrity=" not in tag  # the CDN's hash, which unminified copies do not match
            local += re.findall(rf'(?:src|href)="({publish.VENDOR_DIR}/[^"]+)"', tag)
    assert sorted(local) == sorted(f"{publish.VENDOR_DIR}/{f}" for f in publish.BUNDLED.values())
    for path in local:
        assert (site / path).stat().st_size > 1000, path
    notice = (site / publish.VENDOR_DIR / "NOTICE").read_text()
    for library in ("jQuery 3.3.1", "Flot 0.8.3", "flot-orderbars 1.0.0", "Bootstrap 3.1.1",
                    "Stupid jQuery Table Sort 1.0.1", "JavaScript MD5 (blueimp-md5) 2.19.0"):
        assert library in notice
    assert notice.count("Permission is hereby granted") == 6


@needs_asv
def test_bundled_copies_are_what_asv_loads():
    """The set is exactly the CDN URLs of the installed asv's pages, and the
    NOTICE's "same bytes" claims hold against the hashes asv pins."""
    import asv
    template = Path(asv.__file__).parent / "www" / "index.html"
    pinned = dict(re.findall(r'(?:src|href)="(https://[^"]+)" integrity="([^"]+)"',
                             template.read_text()))
    assert set(pinned) == set(publish.BUNDLED)
    notice = (Path(publish.ASSETS) / "NOTICE").read_text()
    same = 0
    for url, rel in publish.BUNDLED.items():
        algorithm, digest = pinned[url].split("-", 1)
        data = (Path(publish.ASSETS) / rel).read_bytes()
        ours = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
        block = notice[notice.index(rel.split("/")[-1]):]
        claim = re.search(r"same bytes as asv's CDN file: (yes|no)", block).group(1)
        assert (ours == digest) == (claim == "yes"), rel
        same += ours == digest
    assert same == 5  # jQuery, stupidtable, md5, bootstrap's js and css


@needs_asv
@needs_history
@needs_chromium
def test_published_site_renders_offline_in_chromium(site, browser, tmp_path):
    benchmarks = json.loads((RESULTS / "benchmarks.json").read_text())
    with served(site) as server:
        browser.requests.clear()
        browser.goto(f"{server.url}index.html#summarylist")
        rows = browser.wait_for(
            "$('#summarylist-body table tbody tr').map(function() "
            "{ return $(this).find('td').first().text() }).get()", "the benchmark list")
        # The list shows one machine at a time: every benchmark it has results of.
        [shown] = selector_buttons(browser, "#summarylist-navigation", "machine", active_only=True)
        listed = {row.split(" (")[0].strip() for row in rows}
        with_results = {b for b in benchmarks if b != "version"
                        and any(m == shown for m, _ in expected_points(RESULTS, b))}
        # a machine lists what it has at the suite's versions: the metadata
        # bytes everywhere, speed where it was measured since its bump
        assert listed == with_results and METADATA in listed

        for benchmark in (SPEED, METADATA):
            series = open_graph(browser, server.url, benchmark)
            per_machine = assert_plot_matches_results(series, site, RESULTS, benchmark)
            assert set(per_machine) == {m for m, _ in expected_points(RESULTS, benchmark)}
            assert max(sum(y is not None for _, y in s["data"]) for s in series) >= 2, \
                f"{benchmark}: no line with two commits' points"

        open_graph(browser, server.url, SPEED)
        shot = tmp_path / "gather-1366x768.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 20_000  # rendered, not blank

        away = [u for u in browser.requests if not u.startswith((server.url, "about:"))]
        assert not away, f"requests left the local server: {away}"
        served_paths = {p.split("?")[0].lstrip("/") for p in server.paths}
        assert {f"{publish.VENDOR_DIR}/{f}" for f in publish.BUNDLED.values()} <= served_paths
        assert "error.html" not in served_paths  # asv's page for a script that failed to load


def two_machine_results(dest):
    """results/ with two machines: the committed ones when there are two or
    more, else the committed one and a copy of it under another name, CPU
    and halved figures."""
    shutil.copy(RESULTS / "benchmarks.json", dest / "benchmarks.json")
    # machines with the speed benchmark at the suite's version first: older
    # baselines hold only the metadata bytes at it
    current = {m for m, _ in expected_points(RESULTS, SPEED)}
    machines = sorted(machine_dirs(RESULTS), key=lambda m: json.loads(
        (m / "machine.json").read_text())["machine"] not in current)
    for m in machines[:2]:
        shutil.copytree(m, dest / m.name)
    if len(machines) >= 2:
        return
    second = dest / "second-lab-box"
    shutil.copytree(machines[0], second)
    for f in second.glob("*.json"):
        doc = json.loads(f.read_text())
        if f.name == "machine.json":
            doc.update(machine="second-lab-box", cpu="Second lab CPU")
        else:
            doc["params"].update(machine="second-lab-box", cpu="Second lab CPU")
            for result in doc["results"].values():
                result[0] = [v / 2 if isinstance(v, (int, float)) else v for v in result[0]]
        f.write_text(json.dumps(doc))


@needs_asv
@needs_history
@needs_chromium
def test_publish_merges_two_machines(tmp_path, browser):
    results = tmp_path / "results"
    results.mkdir()
    two_machine_results(results)
    names = [json.loads((m / "machine.json").read_text())["machine"] for m in machine_dirs(results)]
    assert len(names) == 2
    # A publisher's config: the project's repository, results gathered elsewhere.
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "project": "pagetax", "repo": str(ROOT),
                                  "branches": ["HEAD"], "results_dir": "results",
                                  "html_dir": "html"}))
    p = cli("publish", "--config", str(config), cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    html = tmp_path / "html"  # the config's html_dir, beside the config

    index = json.loads((html / "index.json").read_text())
    assert sorted(index["machines"]) == sorted(names)
    assert sorted(index["params"]["machine"]) == sorted(names)
    # Both machines hold METADATA at the suite's version (results/README.md:
    # only such benchmarks compare across the baselines).
    for name in names:
        assert list(html.glob(f"graphs/**/machine-{name}/**/{METADATA}.json"))
    assert list(html.glob(f"graphs/**/{SPEED}.json"))

    with served(html) as server:
        browser.requests.clear()
        series = open_graph(browser, server.url, METADATA)
        assert sorted(selector_buttons(browser, "#graphdisplay-state-params", "machine")) == \
            sorted(names)
        per_machine = assert_plot_matches_results(series, html, results, METADATA)
        assert sorted(per_machine) == sorted(names)  # both machines' lines, on one graph
        browser.goto(f"{server.url}index.html#summarylist")
        browser.wait_for("$('#summarylist-body table tbody tr').length", "the benchmark list")
        assert sorted(selector_buttons(browser, "#summarylist-navigation", "machine")) == \
            sorted(names)
        assert not [u for u in browser.requests if not u.startswith((server.url, "about:"))]


def test_publish_without_asv_says_how_to_get_it(tmp_path):
    code = ("import sys; sys.modules['asv'] = None; from pagetax.cli import main; "
            "sys.exit(main(['publish']))")  # asv hidden from this Python
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().endswith("pip install asv") and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@needs_asv
def test_publish_refuses_a_directory_asv_would_delete(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    p = cli("publish", "--config", str(ROOT / "asv.conf.json"), "--html-dir", str(precious),
            cwd=tmp_path)
    assert p.returncode == 1 and "is not empty and is no earlier published site" in p.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
    p = cli("publish", "--config", str(ROOT / "asv.conf.json"), "--html-dir", str(ROOT),
            cwd=tmp_path)
    assert p.returncode == 1 and "holds the asv config" in p.stderr
    p = cli("publish", cwd=tmp_path)  # no asv.conf.json here
    assert p.returncode == 1
    assert p.stderr.strip() == (f"pagetax: error: {tmp_path / 'asv.conf.json'}: No such file or "
                                "directory; give the asv config with --config")


def test_a_half_written_site_of_an_interrupted_publish_may_be_replaced(tmp_path):
    """asv publish deletes the html dir first, then writes it: a publish cut
    short leaves a site with neither index.json nor asv.js, and its marker
    beside it; only that marker tells it from someone's folder."""
    half = tmp_path / "html"
    half.mkdir()
    (half / "graphs").mkdir()
    with pytest.raises(PagetaxError, match="is not empty and is no earlier published site"):
        publish.check_html_dir(str(half), str(tmp_path / "conf"), str(tmp_path / "results"))
    marker = publish.publishing_marker(str(half))
    assert marker == str(tmp_path / "html.pagetax-publishing")
    open(marker, "w").close()
    publish.check_html_dir(str(half), str(tmp_path / "conf"), str(tmp_path / "results"))


def test_localize_refuses_a_cdn_url_it_has_no_copy_of(tmp_path):
    page = '<script src="https://cdn.example.org/new-lib.min.js" integrity="x"></script>'
    (tmp_path / "index.html").write_text(page)
    with pytest.raises(PagetaxError, match="loads https://cdn.example.org/new-lib.min.js"):
        publish.localize(str(tmp_path))
    assert (tmp_path / "index.html").read_text() == page  # left as asv wrote it
