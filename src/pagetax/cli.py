"""The pagetax command line: `pagetax COMMAND` (also `python -m pagetax`).

It walks pagetax.commands, one module per command with its options and its
body, dispatches, and turns every error into one line and an exit status.
Only `run` (and `kernel`) load the C core, and only inside their bodies."""
import signal
import sys

from rich.console import Console

from .commands import COMMANDS
from .commands.options import Parser, Terminated, glue_negative_values, say
from .errors import PagetaxError


def _version_text():
    from . import version
    return version.text()


def build_parser(command="run"):
    """The command line; `command`'s own heavy options only for it (see
    pagetax.commands)."""
    p = Parser(prog="pagetax", description="What struct page costs scatter-gather I/O, "
               "against raw (address, length) vectors.")
    p.add_argument("--version", action="version", version=_version_text())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for cmd in COMMANDS:
        cmd.add_parser(sub, detailed=command == cmd.NAME)
    return p


def main(argv=None):
    argv = glue_negative_values(sys.argv[1:] if argv is None else argv)
    if not argv:  # a newcomer's first try: the commands, not an error
        build_parser(command=None).print_help()
        return 0
    command = build_parser(command=None).parse_known_args(argv)[0].command
    args = build_parser(command).parse_args(argv)

    def on_term(signum, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, on_term)
    out = Console()
    err = Console(stderr=True)
    try:
        return {cmd.NAME: cmd.run for cmd in COMMANDS}[args.command](args, out, err)
    except PagetaxError as e:
        say(f"pagetax: error: {e}")
        return 1
    except KeyboardInterrupt:
        say("pagetax: interrupted")
        return 130
    except Terminated:
        say("pagetax: terminated")
        return 143


if __name__ == "__main__":
    sys.exit(main())
