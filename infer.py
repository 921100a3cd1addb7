"""`python infer.py ...` from a checkout: `facemask annotate` (facemask/cli/annotate.py; `facemask --help` lists the
other commands).

    python infer.py --is_image --in_path sample-images --out_path output
"""
from facemask.cli.annotate import main, parse_args  # noqa: F401  (parse_args: scripts call it here)
from facemask.cli.main import run

if __name__ == "__main__":
    run(main)
