"""`pagetax publish`: asv's site of every machine's results, with no CDN."""
from .options import say

NAME = "publish"


def add_parser(sub, detailed):
    pub = sub.add_parser("publish", help="asv's web pages of all machines' results, no CDN",
                         description="Run `asv publish` over the asv results (every machine "
                         "under results/), then point the pages at copies of jQuery, flot and "
                         "bootstrap written into the site, so that it works with no network "
                         "from any static web server.  Needs asv: pip install asv.")
    pub.add_argument("--config", default="asv.conf.json", metavar="PATH",
                     help="asv's config (default: asv.conf.json here); its results_dir is "
                     "published")
    pub.add_argument("--html-dir", "-o", metavar="DIR",
                     help="where the site goes (default: the config's html_dir); replaced "
                     "whole, so it must be new, empty or an earlier published site")

    return pub


def run(args, out, err):
    from .. import publish
    say(f"published: {publish.publish(args.config, args.html_dir, say=say)}")
    return 0
