"""Tool-call snapshots: what must stay identical across a binary/GGUF/flag swap, and what may vary.

Call ids are random 32-character strings when the model does not produce them (``gen_tool_call_id``
in tools/server/server-common.cpp), so they are matched by type; everything else (name, parsed
arguments, finish_reason, call order and count, leftover content) must equal the stored snapshot.

Why one snapshot file per serving config (``snapshots/<config>/<test file>.ambr`` beside the suite,
or under ``--specgate-snapshot-dir``): a tool call is a property of a model + template + flags, so
configs need their own entries side by side. In one shared file syrupy would count every other
config's entries as unused (exit 1, even under ``--co``) and ``--snapshot-update`` would delete
them. Each config gets its own extension class whose directory holds only that config's file, so
syrupy discovers, reports and updates only the selected config's entries. The directory is not named
``__snapshots__`` because syrupy's default extension scans ``__snapshots__`` recursively whenever a
run makes no snapshot assertion (``--co``, ``-k decode``), and would call those entries unused.

A config with a ``reference`` (a speculative config against plain decoding) must produce its
reference's tool call, so it is compared with the reference's entries, read-only:
:func:`reference_mismatch` never goes through syrupy's assertion, so ``--snapshot-update`` under
such a config cannot write into the reference's file (which would make the check compare the
candidate with itself).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from syrupy.assertion import SnapshotAssertion
from syrupy.exceptions import SnapshotDoesNotExist
from syrupy.extensions.amber import AmberSnapshotExtension
from syrupy.location import PyTestLocation
from syrupy.matchers import path_type
from syrupy.types import PropertyMatcher

from pytest_specgate.measure.sample import Sample

__all__ = ["SNAPSHOT_DIRNAME", "ConfigSnapshotExtension", "config_extension", "reference_mismatch",
           "tool_call_markers", "tool_call_matcher", "tool_call_record"]

#: the per-config snapshot root beside a suite file (not ``__snapshots__``: see the module docstring)
SNAPSHOT_DIRNAME = "snapshots"

#: volatile fields: any path ending in ".id" is compared by type only
tool_call_matcher = path_type({r".*\.id": (str,)}, regex=True)


def tool_call_record(sample: Sample) -> dict[str, Any]:
    """The comparable part of a tool-call response."""
    calls = []
    for c in sample.tool_calls:
        try:
            args: Any = json.loads(c.arguments)
        except ValueError:
            args = {"<invalid json>": c.arguments}
        calls.append({"index": c.index, "id": c.id, "type": c.type, "name": c.name, "arguments": args})
    return {"finish_reason": sample.finish_reason, "content": sample.content.strip(), "tool_calls": calls}


# ------------------------------------------------------------------------------------------------
# one snapshot directory per serving config


class ConfigSnapshotExtension(AmberSnapshotExtension):
    """Amber files of one serving config: ``<root>/<config>/<test file>.ambr``.

    ``root`` is ``snapshots/`` beside the test file unless ``snapshot_root`` is set (suites run with
    ``--pyargs`` from an installed wheel keep their snapshots in the user's repository instead).
    Subclasses made by :func:`config_extension` carry the config; syrupy keys its discovery by class.
    """

    config_name: ClassVar[str] = ""
    snapshot_root: ClassVar[str] = ""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        root = Path(cls.snapshot_root) if cls.snapshot_root else Path(test_location.filepath).parent / SNAPSHOT_DIRNAME
        return str(root / cls.config_name)


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@cache
def config_extension(config: str, root: str = "") -> type[ConfigSnapshotExtension]:
    """The extension class for ``config`` (one class per config and root, so syrupy keeps them apart)."""
    if not _SAFE.match(config):
        raise ValueError(f"config name {config!r} cannot name a snapshot directory. "
                         f"Fix: use letters, digits, '.', '_' and '-' in config names.")
    class_name = "ConfigSnapshotExtension_" + re.sub(r"\W", "_", config)
    return type(class_name, (ConfigSnapshotExtension,), {"config_name": config, "snapshot_root": root})


def reference_mismatch(snapshot: SnapshotAssertion, data: Any, *, config: str, reference: str, root: str = "",
                       matcher: PropertyMatcher | None = None) -> str | None:
    """Compare ``data`` with the reference config's stored entry for this test; None when identical.

    Read-only on purpose (see the module docstring). The message names the fix: update the
    reference's entries under the reference config, never under the candidate.
    """
    ext = config_extension(reference, root)()
    location = snapshot.test_location
    name = ext.get_snapshot_name(test_location=location, index=0)
    path = ext.get_location(test_location=location, index=0)
    update = f"pytest {Path(location.filepath).name} --specgate-config={reference} --snapshot-update"
    serialized = ext.serialize(data, matcher=matcher)
    try:
        stored = ext.read_snapshot(test_location=location, index=0, session_id=str(id(snapshot.session)))
    except SnapshotDoesNotExist:
        return (f"config {config!r} is compared with the snapshot of its reference {reference!r}, which has no entry "
                f"{name!r} in {path}. Fix: record the reference's tool call first: {update}")
    if ext.matches(serialized_data=serialized, snapshot_data=stored):
        return None
    diff = "\n".join(ext.diff_lines(serialized, stored))
    return (f"config {config!r} makes a different tool call than its reference {reference!r} ({path}, {name}): "
            f"speculation must not change a tool call. This check never updates the reference's entries; if the "
            f"reference itself changed on purpose, update them with: {update}\n{diff}")


# ------------------------------------------------------------------------------------------------
# the chat template's tool-call markup

#: tool-call markers of the formats common/chat.cpp parses that do not spell "tool" and "call"
_KNOWN_MARKERS = ("<|python_tag|>", "<function=", "<|START_ACTION|>", "<|tools_prefix|>", "<|function_call|>",
                  "[ARGS]", "<atem:function_calls>", "<invoke name=", "<|channel|>", "to=functions.")
#: any tag-like token naming a tool call: <tool_call>, <|tool_call|>, [TOOL_CALLS], <TOOLCALL>, ...
#: (the closing ">" is optional: some templates build the tag by concatenation, '<tool_call' ~ ...)
_TOOL_TAG = re.compile(r"</?[|\uff5c]?[\w:.\u2581\uff5c]*tool[_\u2581]?calls?[\w:.\u2581\uff5c]*\|?>?|\[TOOL_CALLS\]",
                       re.IGNORECASE)


def tool_call_markers(template: str) -> list[str]:
    """The tool-call markup the chat template emits: what must never leak into ``content``.

    The server parses a model's tool-call markup into ``tool_calls`` using the markers of its chat
    template (common/chat.cpp); markup left in ``content`` means that parse failed. Which markers
    apply depends on the template, so they are read from it: every tag-like token naming a tool call
    (``<tool_call>``, ``<|tool_call_start|>``, ``[TOOL_CALLS]``, ...) plus the known markers of formats
    that do not (``<|python_tag|>``, ``<function=``, ...), kept only where the template contains them.
    """
    found = {m.group(0) for m in _TOOL_TAG.finditer(template)}
    found |= {m for m in _KNOWN_MARKERS if m in template}
    # "<tool_call" covers "<tool_call>": keep the shortest form of each marker
    return sorted(m for m in found if not any(o != m and m.startswith(o) for o in found))
