"""`specgate` command: provisioning and stored-results tools that do not need a pytest run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_specgate.errors import SpecgateError
from pytest_specgate.provision.catalog import add_provision_arguments, provision_from_args
from pytest_specgate.report.write import write_all
from pytest_specgate.store import load
from pytest_specgate.verdict.baseline import compare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specgate", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    prov = sub.add_parser("provision", help="build the pinned llama-server (CPU, or CUDA with a GPU), assemble the "
                          "demo model, make synthetic GGUFs (and production-shaped ones with --shape)")
    rep = sub.add_parser("report",
                         help="re-render report.{json,md,html} and benchmark-*.json from a stored results file")
    rep.add_argument("results", type=Path, help="a results file: latest.json, runs/*.json, baselines/*.json")
    rep.add_argument("--out", type=Path, default=None, help="directory for the reports (default: the results file's)")
    cmp = sub.add_parser("compare", help="compare two stored runs; exit 1 when a metric regressed beyond its threshold")
    cmp.add_argument("old", type=Path, help="the baseline results file")
    cmp.add_argument("new", type=Path, help="the results file to judge")
    cmp.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval level (default 0.95)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "provision":
            provision_from_args(args)
        elif args.cmd == "report":
            run = load(args.results)
            out = args.out or args.results.parent
            for path in write_all(run, out):
                print(path)
        elif args.cmd == "compare":
            old, new = load(args.old), load(args.new)
            comparison = compare(old, new, new.thresholds, confidence=args.confidence, name=str(args.old))
            print("\n".join(comparison.lines(verbose=True)))
            return 1 if comparison.failed else 0
    except SpecgateError as e:
        print(f"specgate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
