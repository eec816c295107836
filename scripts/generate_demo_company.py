"""Write the demo company: its AD export as LDIF and its HR export as CSV, drawn from the
same people; by default rebuild the shipped company.ldif and hr-export.csv.

    python scripts/generate_demo_company.py [--employees N] [--seed S] [-o FILE] [--hr-output FILE]

The library (persona_sync.demo.generate, persona_sync.demo.hr) only builds entries and
text; reading arguments, writing the files and saying what was written happen here. Run
it after changing persona_sync/demo/company.yaml, the generator or the HR export, then
update the digests that tests/demo/test_generate.py pins.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's package, not whichever one is installed

from persona_sync.demo import hr  # noqa: E402
from persona_sync.demo.generate import (  # noqa: E402
    DEFAULT_OUTPUT,
    generate_company,
    ldif_bytes,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/generate_demo_company.py",
        description="Write the demo company: its AD export (LDIF) and its HR export (CSV).",
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
    parser.add_argument(
        "--hr-output",
        type=Path,
        default=hr.DEFAULT_OUTPUT,
        help=f"HR export to write (default {hr.DEFAULT_OUTPUT.relative_to(REPO)})",
    )
    args = parser.parse_args(argv)
    try:
        entries = generate_company(args.employees, args.seed)
        text = hr.hr_export(args.employees, args.seed)
    except ValueError as error:
        parser.error(str(error))
    data, rows = ldif_bytes(entries), text.encode("utf-8")
    # Both files or neither: each is written beside its place first, then both renamed.
    written: list[tuple[Path, Path]] = []
    for output, content in ((args.output, data), (args.hr_output, rows)):
        temporary = output.with_name(output.name + ".partial")
        try:
            temporary.write_bytes(content)
        except OSError as error:
            for _, done in written:
                done.unlink()
            parser.exit(1, f"cannot write {output}: {error.strerror}\n")
        written.append((output, temporary))
    for output, temporary in written:
        temporary.replace(output)
    print(f"wrote {len(entries)} entries ({len(data):,} bytes) to {args.output}")
    print(f"wrote {text.count(chr(10)) - 1} HR rows ({len(rows):,} bytes) to {args.hr_output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
