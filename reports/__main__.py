"""``python -m reports results/<run>``: rebuild a run's ``report.html`` and ``summary.md``."""

from __future__ import annotations

import argparse
import sys

from reports.build import build
from reports.run import RunFolderError


def main(argv: list[str] | None = None) -> int:
    """Build the report; a bad folder is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m reports", description="Rebuild report.html and summary.md for a kdsearch run folder."
    )
    parser.add_argument("run_dir", help="the run folder, e.g. results/r1")
    args = parser.parse_args(argv)
    try:
        report = build(args.run_dir)
    except RunFolderError as exc:
        print(f"python -m reports: error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
