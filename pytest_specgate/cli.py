"""`specgate` command: provisioning and stored-results tools that do not need a pytest run."""

from __future__ import annotations

import argparse
import sys

from pytest_specgate.errors import SpecgateError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specgate", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("provision", help="build the pinned CPU llama-server, assemble the demo model, make synthetic GGUFs")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "provision":
            from pytest_specgate import provision

            provision.provision_all()
    except SpecgateError as e:
        print(f"specgate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
