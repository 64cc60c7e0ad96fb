"""Tool-call snapshots: what must stay identical across a binary/GGUF/flag swap, and what may vary.

Call ids are random 32-character strings when the model does not produce them (``gen_tool_call_id``
in tools/server/server-common.cpp), so they are matched by type; everything else (name, parsed
arguments, finish_reason, call order and count, leftover content) must equal the stored snapshot.
"""

from __future__ import annotations

import json
from typing import Any

from syrupy.matchers import path_type

from pytest_specgate.measure.sample import Sample

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
