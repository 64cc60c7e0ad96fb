"""Stash keys: the only place the plugin keeps state between hooks (no module globals)."""

from __future__ import annotations

import pytest

from pytest_specgate.gate import Gate

gate_key = pytest.StashKey[Gate]()
