"""``python -m pytest_specgate.provision``: provision everything and print a JSON summary."""

from __future__ import annotations

import json

from pytest_specgate.provision.catalog import provision_all

if __name__ == "__main__":
    print(json.dumps(provision_all(), indent=2))
