"""Where provisioned artefacts live, and the files the plugin ships.

Everything provisioned lives under :func:`cache_dir`, so CI can cache one directory and tests can
point a fresh ``SPECGATE_CACHE`` at a temp dir.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

__all__ = ["Log", "cache_dir", "hash_cache_path", "tool_chat_template"]

Log = Callable[[str], None]


def cache_dir() -> Path:
    """Root of everything provisioned; ``$SPECGATE_CACHE`` lets CI put it on a cached volume."""
    if env := os.environ.get("SPECGATE_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "pytest-specgate"
    return Path.home() / ".cache" / "pytest-specgate"



def tool_chat_template() -> Path:
    """The Qwen-style tool-call template shipped with the plugin (for ``--chat-template-file``)."""
    return Path(str(resources.files("pytest_specgate").joinpath("data/tool-chat-template.jinja")))


def hash_cache_path() -> Path:
    """``$SPECGATE_CACHE/hashes.json``: file hashes and ``--version`` texts, shared across runs."""
    return cache_dir() / "hashes.json"
