"""The commands, one module each (as asv's and pip's): NAME, add_parser(sub,
detailed) with its options, and run(args, out, err) with its body.  The
command line (cli.py) only walks this list.  `detailed` is True for the
command being run: run's options name what the C core offers and vm's
sub-commands its tools, so they are added only then."""
from . import compare, kernel, metadata, plot, publish, report, run, vm

COMMANDS = (run, plot, report, compare, publish, metadata, kernel, vm)
