"""Write the demo company (an AD export) as LDIF; by default rebuild the shipped company.ldif.

    python scripts/generate_demo_company.py [--employees N] [--seed S] [-o FILE]

The library (persona_sync.demo.generate) only builds entries and bytes; reading arguments,
writing the file and saying what was written happen here. Run it after changing
persona_sync/demo/company.yaml or the generator, then update the digest that
tests/demo/test_generate.py pins.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's package, not whichever one is installed

from persona_sync.demo.generate import (  # noqa: E402
    DEFAULT_OUTPUT,
    generate_company,
    ldif_bytes,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/generate_demo_company.py",
        description="Write the demo company (an AD export) as LDIF.",
    )
    parser.add_argument("--employees", type=int, default=2400, help="people (default 2400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"LDIF file to write (default {DEFAULT_OUTPUT.relative_to(REPO)})",
    )
    args = parser.parse_args(argv)
    try:
        entries = generate_company(args.employees, args.seed)
    except ValueError as error:
        parser.error(str(error))
    data = ldif_bytes(entries)
    try:
        args.output.write_bytes(data)
    except OSError as error:
        parser.exit(1, f"cannot write {args.output}: {error.strerror}\n")
    print(f"wrote {len(entries)} entries ({len(data):,} bytes) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
