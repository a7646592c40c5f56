"""`pagetax publish`: asv's site from results/, made to work with no network.

asv 0.6's pages load jQuery, flot, bootstrap and a few plugins from public
CDNs.  After `asv publish` has written the site, the pages are pointed at
local copies shipped in pagetax/asv_assets/ (licences in its NOTICE), which
are copied into the site, so that it works air-gapped and from any static
server.  Nothing outside the html dir is written."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

from .errors import PagetaxError

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "asv_assets")
VENDOR_DIR = "pagetax-vendor"  # in the site; a name asv's own files do not use

# Each URL asv's pages load, and its copy in ASSETS.
BUNDLED = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery-3.3.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js":
        "flot-0.8.3/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        "flot-0.8.3/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        "flot-0.8.3/jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        "flot-0.8.3/jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        "flot-orderbars-1.0.0/jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        "stupidtable-1.0.1/stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        "blueimp-md5-2.19.0/md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        "bootstrap-3.1.1/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        "bootstrap-3.1.1/bootstrap.min.css",
}

# Tags that make the browser fetch something; <a href> is a link, not a load.
_LOADING_TAG = re.compile(r"<(?:script|link|img|iframe)\b[^>]*>", re.IGNORECASE)
_REMOTE_URL = re.compile(r"""\b(src|href)\s*=\s*(["'])((?:https?:)?//[^"']+)\2""", re.IGNORECASE)
# Attributes for a third party's file: an integrity hash pins the CDN's bytes
# (some copies here differ: unminified), crossorigin asks for its CORS headers.
_CDN_ATTRIBUTES = re.compile(r"""\s+(?:integrity|crossorigin)\s*=\s*(["'])[^"']*\1""",
                             re.IGNORECASE)


def asv_command():
    """How to run the asv of this Python, or a one-line error."""
    if importlib.util.find_spec("asv") is None:
        raise PagetaxError(f"asv is not installed in {sys.executable}: pip install asv")
    return [sys.executable, "-m", "asv"]


def read_config(path):
    """asv.conf.json, read as asv reads it (JSON5: comments allowed)."""
    import json5  # asv's own dependency, so present wherever asv is
    try:
        with open(path, encoding="utf-8") as f:
            conf = json5.load(f)
    except OSError as e:
        raise PagetaxError(f"{path}: {e.strerror}; give the asv config with --config") from None
    except ValueError as e:
        raise PagetaxError(f"{path}: not an asv config ({e})") from None
    if not isinstance(conf, dict):
        raise PagetaxError(f"{path}: not an asv config (no JSON object)")
    return conf


def _inside(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return os.path.commonpath([path, parent]) == parent


def publishing_marker(html_dir):
    """A file beside the html dir while pagetax publishes into it (asv
    deletes the dir itself first): a dir with this beside it is our own
    half-written site, from a publish that was interrupted."""
    return os.path.normpath(html_dir) + ".pagetax-publishing"


def check_html_dir(html_dir, config_dir, results_dir):
    """asv publish deletes the html dir before writing it: refuse a
    directory that holds anything but an earlier published site, or the
    half-written one an interrupted publish left."""
    for keep, what in ((config_dir, "the asv config"), (results_dir, "the results")):
        if _inside(keep, html_dir):
            raise PagetaxError(f"html dir {html_dir} holds {what} ({keep}), which asv publish "
                               "would delete: give another --html-dir")
    if os.path.isdir(html_dir) and os.listdir(html_dir) and not all(
            os.path.exists(os.path.join(html_dir, f)) for f in ("index.json", "asv.js")) \
            and not os.path.exists(publishing_marker(html_dir)):
        raise PagetaxError(f"html dir {html_dir} is not empty and is no earlier published site; "
                           "asv publish would delete it: give an empty or new --html-dir")
    if os.path.exists(html_dir) and not os.path.isdir(html_dir):
        raise PagetaxError(f"html dir {html_dir} is a file, not a directory")


def localize(html_dir):
    """Point every page of the site at the bundled copies and copy them in.
    A CDN URL without a copy is an error, not a page that needs the network.
    Returns the number of URLs rewritten."""
    pages = [os.path.join(html_dir, f) for f in sorted(os.listdir(html_dir))
             if f.endswith(".html")]
    rewritten = 0
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        unknown = []

        def rewrite_tag(tag):
            nonlocal rewritten
            found = _REMOTE_URL.search(tag.group(0))
            if not found:
                return tag.group(0)
            url = found.group(3)
            if url not in BUNDLED:
                unknown.append(url)
                return tag.group(0)
            rewritten += 1
            local = f"{found.group(1)}={found.group(2)}{VENDOR_DIR}/{BUNDLED[url]}{found.group(2)}"
            out = tag.group(0).replace(found.group(0), local)
            return _CDN_ATTRIBUTES.sub("", out)
        text = _LOADING_TAG.sub(rewrite_tag, text)
        if unknown:
            raise PagetaxError(f"{os.path.basename(page)} loads {unknown[0]}, which pagetax has no "
                               "copy of (a newer asv?); the site in "
                               f"{html_dir} still needs the network")
        with open(page, "w", encoding="utf-8") as f:
            f.write(text)
    vendor = os.path.join(html_dir, VENDOR_DIR)
    if os.path.exists(vendor):
        shutil.rmtree(vendor)
    shutil.copytree(ASSETS, vendor)
    return rewritten


def publish(config, html_dir=None, say=print):
    """`asv publish` with CONFIG into HTML_DIR (default: the config's
    html_dir), then localize the site.  Returns the html dir."""
    asv = asv_command()
    config = os.path.abspath(config)
    conf = read_config(config)
    config_dir = os.path.dirname(config)
    # asv reads paths in its config relative to the config's directory.
    html_dir = os.path.abspath(html_dir) if html_dir else \
        os.path.join(config_dir, conf.get("html_dir", "html"))
    results_dir = os.path.join(config_dir, conf.get("results_dir", "results"))
    if not os.path.isdir(results_dir):
        raise PagetaxError(f"no results at {results_dir} (results_dir of {config})")
    check_html_dir(html_dir, config_dir, results_dir)
    marker = publishing_marker(html_dir)
    try:
        with open(marker, "w") as f:
            f.write(f"pagetax publish, pid {os.getpid()}\n")
    except OSError as e:
        raise PagetaxError(f"cannot write {marker}: {e.strerror}") from None
    # --no-pull: publishing reads the repository, it never fetches into it.
    done = subprocess.run([*asv, "--config", config, "publish", "--no-pull",
                           "--html-dir", html_dir])
    if done.returncode != 0:
        raise PagetaxError(f"asv publish exited {done.returncode}; its own message is above")
    if not os.path.exists(os.path.join(html_dir, "index.html")):
        raise PagetaxError(f"asv publish wrote no index.html in {html_dir}")
    n = localize(html_dir)
    os.unlink(marker)   # a whole site now: an interrupted publish leaves the marker
    say(f"pagetax: publish: {n} CDN URLs now point at {VENDOR_DIR}/ in the site")
    return html_dir
