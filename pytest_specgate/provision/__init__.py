"""Provision what the real-path tests need: a pinned CPU llama-server, the demo model, synthetic GGUFs.

Submodules: :mod:`.cache` (where things live), :mod:`.llama_cpp` (the pinned build),
:mod:`.models` (demo + synthetic GGUFs), :mod:`.catalog` (``provisioned:NAME`` and provisioning
everything). This module only re-exports the names callers use.
"""

from pytest_specgate.provision.cache import cache_dir, tool_chat_template
from pytest_specgate.provision.catalog import provision_all, provisioned_path
from pytest_specgate.provision.llama_cpp import (
    LLAMA_CPP_VERSION,
    BuildInfo,
    cpu_isa,
    ensure_llama_cpp,
    llama_bench,
    llama_cpp_dir,
    llama_server,
)
from pytest_specgate.provision.models import DEMO_MODEL_SHA256, demo_model, synthetic_model

__all__ = [
    "DEMO_MODEL_SHA256",
    "LLAMA_CPP_VERSION",
    "BuildInfo",
    "cache_dir",
    "cpu_isa",
    "demo_model",
    "ensure_llama_cpp",
    "llama_bench",
    "llama_cpp_dir",
    "llama_server",
    "provision_all",
    "provisioned_path",
    "synthetic_model",
    "tool_chat_template",
]
