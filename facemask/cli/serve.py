"""`facemask serve detection|classification`: one of the two services under gunicorn, with the package's gunicorn
settings (facemask/serving/gunicorn_conf.py), in this process (exec), as the Docker images run them."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from facemask.core.paths import PACKAGES_ROOT

DEFAULT_PORTS = {"classification": 3000, "detection": 8000}


def parse_args(argv=None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("service", choices=sorted(DEFAULT_PORTS), help="which service")
    parser.add_argument("--bind", default=None,
                        help="HOST:PORT to listen on (default: $BIND, else 0.0.0.0:$PORT; PORT defaults to 3000 for "
                             "classification, 8000 for detection)")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: $WEB_CONCURRENCY)")
    return parser.parse_args(argv)


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    missing = [name for name in ("flask", "gunicorn", "gevent") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: facemask serve needs {', '.join(missing)}: pip install 'facemask[serve]'", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    # The services read their settings from the environment (facemask.core.settings), gunicorn's config included.
    os.environ.setdefault("PORT", str(DEFAULT_PORTS[args.service]))
    if args.bind:
        os.environ["BIND"] = args.bind
    if args.workers is not None:
        os.environ["WEB_CONCURRENCY"] = str(args.workers)
    command = [sys.executable, "-m", "gunicorn", "-c", str(PACKAGES_ROOT / args.service / "gunicorn.conf.py"),
               f"{args.service}.app:create_app()"]
    sys.stdout.flush()
    os.chdir(PACKAGES_ROOT)  # the services import as packages from here, in a checkout as when installed
    os.execv(sys.executable, command)
    return 0  # not reached: gunicorn replaced this process
