"""The `facemask` command: one command, a subcommand per application.

    facemask annotate --is_image --in_path sample-images --out_path output    # photos, videos, cameras, streams
    facemask watch --source rtsp://door-cam/stream --camera door              # a camera all day
    facemask serve classification                                             # a service under gunicorn
    facemask worker ...                                                       # the video job queue's worker

`facemask --is_image --in_path ... --out_path ...` (no subcommand) is `facemask annotate`, as before there were
subcommands; `python infer.py ...` is the same. `facemask COMMAND --help` lists a command's options.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import signal
import sys
from typing import Callable

# name: (module with main(argv, prog), what it does). Imported only when chosen: `facemask serve` needs no video
# tracker, `facemask annotate` no web server, and `worker` comes with the job queue (facemask/worker.py).
COMMANDS = {
    "annotate": ("facemask.cli.annotate", "annotate photos, a folder, a video, a camera or a stream (the default)"),
    "watch": ("facemask.cli.watch", "watch a camera all day: events, webhook, recordings, live view, metrics"),
    "serve": ("facemask.cli.serve", "run the detection or the classification service under gunicorn"),
    "worker": ("facemask.worker", "run video jobs from the job queue"),
}


def help_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facemask", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        help_parser().print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name = argv[0] if argv[0] in COMMANDS else "annotate"
    arguments = argv[1:] if argv[0] in COMMANDS else argv
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            print(f"error: facemask {name} is not available in this install ({module_name} is missing)",
                  file=sys.stderr)
        else:
            print(f"error: facemask {name} needs {error.name}, which is not installed", file=sys.stderr)
        return 2
    prog = f"facemask {name}" if argv[0] in COMMANDS else "facemask"
    if "prog" in inspect.signature(module.main).parameters:
        return module.main(arguments, prog=prog)
    return module.main(arguments)


def _exit_on_sigterm(number, _frame):
    # Outside a video run (which finishes its files first), SIGTERM unwinds like Ctrl-C: a classifier the command
    # started is stopped on the way out instead of being left running.
    raise SystemExit(128 + number)


def run(command: Callable[[], int] = main) -> None:
    """The installed `facemask` script (main), and `python infer.py` (facemask annotate's main)."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        sys.exit(command())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
