"""Write the demo company's HR export as CSV; by default rebuild the shipped hr-export.csv.

    python scripts/generate_demo_hr_export.py [--employees N] [--seed S] [-o FILE]

The library (persona_sync.demo.hr) only builds the text; reading arguments, writing the file
and saying what was written happen here. Run it after changing the demo company (see
scripts/generate_demo_company.py) or persona_sync/demo/hr.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's package, not whichever one is installed

from persona_sync.demo.hr import DEFAULT_OUTPUT, hr_export  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/generate_demo_hr_export.py",
        description="Write the demo company's HR export as CSV.",
    )
    parser.add_argument("--employees", type=int, default=2400, help="people (default 2400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"CSV file to write (default {DEFAULT_OUTPUT.relative_to(REPO)})",
    )
    args = parser.parse_args(argv)
    try:
        text = hr_export(args.employees, args.seed)
    except ValueError as error:
        parser.error(str(error))
    data = text.encode("utf-8")
    try:
        args.output.write_bytes(data)
    except OSError as error:
        parser.exit(1, f"cannot write {args.output}: {error.strerror}\n")
    print(f"wrote {text.count(chr(10)) - 1} rows ({len(data):,} bytes) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
