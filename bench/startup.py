"""CLI start-up on one photo, this checkout against a baseline checkout, measured in one run on the same machine.

    git archive <commit> | tar -x -C /tmp/baseline
    python -m bench.startup --baseline /tmp/baseline

Each round runs, in both checkouts one after the other (alternating which goes first): `python -c "import infer"`
(the imports alone) and `python infer.py --is_image` on one sample photo against one classifier service started
once for all runs, so the service's own start is not counted. Wall seconds per process, median of the rounds, and
the ratio new / baseline of each round.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Report, command_line
from facemask.core.paths import REPO_ROOT, RESULTS_DIR
from facemask.serving.local_server import LocalService

PHOTO = REPO_ROOT / "sample-images" / "group_mixed.jpg"
TRACKER_MODULES = "import sys, infer; print(sum(m.split('.')[0] in ('norfair', 'scipy') for m in sys.modules))"


def wall_seconds(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare against")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--name", default="startup")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    checkouts = {"baseline": args.baseline.resolve(), "new": REPO_ROOT}
    tracker_modules = {name: int(subprocess.run([sys.executable, "-c", TRACKER_MODULES], cwd=root, check=True,
                                                capture_output=True, text=True).stdout)
                       for name, root in checkouts.items()}
    times: dict[tuple[str, str], list[float]] = {}
    with LocalService("classification", workers=1) as classifier, tempfile.TemporaryDirectory() as out:
        commands = {
            "import infer": [sys.executable, "-c", "import infer"],
            "infer.py on one photo": [sys.executable, "infer.py", "--is_image", "--in_path", str(PHOTO),
                                      "--out_path", out, "--classifier-url", classifier.url, "--no-local-classifier"],
        }
        for round_number in range(args.rounds + 1):  # round 0 warms the file cache and is not counted
            order = list(checkouts) if round_number % 2 else list(reversed(checkouts))
            for task, command in commands.items():
                for name in order:
                    seconds = wall_seconds(command, checkouts[name])
                    if round_number:
                        times.setdefault((task, name), []).append(seconds)

    rows = []
    for task in ("import infer", "infer.py on one photo"):
        baseline, new = times[(task, "baseline")], times[(task, "new")]
        rows.append({"what": task, "baseline s (median)": statistics.median(baseline),
                     "new s (median)": statistics.median(new),
                     "new / baseline (median of rounds)": statistics.median(n / b for n, b in zip(new, baseline))})
    report = Report(args.name, "CLI start-up: this checkout against a baseline", command_line("bench.startup", argv),
                    out_dir=args.out_dir, baseline=str(checkouts["baseline"]), rounds=args.rounds,
                    python=sys.version.split()[0])
    report.table("Wall seconds per process", rows,
                 note=f"norfair/scipy modules loaded by `import infer`: baseline {tracker_modules['baseline']}, "
                      f"new {tracker_modules['new']}.")
    report.data["seconds"] = {f"{task} / {name}": values for (task, name), values in times.items()}
    report.save()
    return {"rows": rows, "tracker_modules": tracker_modules}


if __name__ == "__main__":
    main()
