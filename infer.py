"""`python infer.py ...` from a checkout: the same command as the installed `facemask` (facemask/cli/annotate.py).

    python infer.py --is_image --in_path sample-images --out_path output
"""
from facemask.cli.annotate import main, parse_args, run  # noqa: F401  (main, parse_args: scripts call them here)

if __name__ == "__main__":
    run()
