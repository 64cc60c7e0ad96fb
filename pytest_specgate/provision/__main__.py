"""``python -m pytest_specgate.provision [--backend cuda] [--shape NAME]``: provision, print a JSON summary."""

from __future__ import annotations

import argparse
import json
import sys

from pytest_specgate.errors import SpecgateError
from pytest_specgate.provision.catalog import add_provision_arguments, provision_from_args

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m pytest_specgate.provision", description=__doc__)
    add_provision_arguments(parser)
    try:
        print(json.dumps(provision_from_args(parser.parse_args()), indent=2))
    except SpecgateError as e:
        print(f"specgate provision: {e}", file=sys.stderr)
        sys.exit(2)
