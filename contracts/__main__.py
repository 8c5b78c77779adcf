"""``python -m sd35_twin.contracts``: read contract reports.

    python -m sd35_twin.contracts table REPORT.json                 the ledger table of one run
    python -m sd35_twin.contracts drift MOCK.json LIVE.json         rows that hold on one target and fail on the other
        [--json] [--profile-out FILE]                     machine-readable; write the suggested profile overrides

``drift`` exits 0 without drift, 1 with drift, 2 on bad input, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import json
import sys

from .report import drift, format_drift, format_table, load_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sd35_twin.contracts", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="print the ledger table of a report")
    t.add_argument("report")
    d = sub.add_parser("drift", help="rows that hold on one target and not on the other")
    d.add_argument("left", help="a report, e.g. of the mock (pytest contracts --contracts-report mock.json)")
    d.add_argument("right", help="another report, e.g. of the live API (--target live --contracts-report live.json)")
    d.add_argument("--json", action="store_true", help="print the drift as JSON")
    d.add_argument("--profile-out", metavar="FILE",
                   help="write the profile overrides the live observations suggest (for --profile FILE)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "table":
            print(format_table(load_report(args.report)))
            return 0
        left, right = load_report(args.left), load_report(args.right)
    except (OSError, ValueError) as exc:
        print(f"python -m sd35_twin.contracts: {exc}", file=sys.stderr)
        return 2
    result = drift(left, right)
    if args.profile_out:
        with open(args.profile_out, "w", encoding="utf-8") as fh:
            json.dump(result.profile_hint, fh, indent=2, sort_keys=True)
            fh.write("\n")
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(format_drift(result))
    return 1 if result.drifted else 0


if __name__ == "__main__":
    raise SystemExit(main())
