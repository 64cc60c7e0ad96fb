"""A config's argv: flag groups, ``extends`` merging, ``${VAR}`` expansion and secret redaction.

Why a module of its own: the same argv is merged when the config file loads, expanded by preflight,
shown in the server log's header and stored in every results file. What counts as a flag, which
flags llama.cpp accumulates when repeated, and which carry a credential are decided here once, so
the file, the log and the reports agree (and no token reaches any of them).
"""

from __future__ import annotations

import os
import re

from pytest_specgate.errors import SpecgateConfigError

__all__ = ["REDACTED", "REPEATABLE", "SECRET_FLAGS", "expand", "flag_values", "group_args", "merge_args",
           "redact_args"]


def _is_flag(tok: str) -> bool:
    return tok.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", tok)


def group_args(args: list[str]) -> list[tuple[str, list[str]]]:
    """Split an argv list into (flag, values) groups: ``-c 4096 -fa on`` -> [(-c,[4096]), (-fa,[on])]."""
    groups: list[tuple[str, list[str]]] = []
    for tok in args:
        if _is_flag(tok) or not groups:
            groups.append((tok, []))
        else:
            groups[-1][1].append(tok)
    return groups


def flag_values(args: list[str], flag: str) -> list[str]:
    return [v for f, vals in group_args(args) if f == flag for v in vals]


#: Flags llama.cpp accumulates when given more than once (handlers that push_back in common/arg.cpp),
#: by spelling -> one canonical spelling, so ``-ot`` in a child replaces ``--override-tensor`` in a parent.
_REPEATABLE_SPELLINGS: list[tuple[str, ...]] = [
    ("-ot", "--override-tensor"),
    ("-otd", "--spec-draft-override-tensor", "--override-tensor-draft"),
    ("--override-kv",),
    ("--lora",),
    ("--lora-scaled",),
    ("--control-vector",),
    ("--control-vector-scaled",),
    ("-r", "--reverse-prompt"),
    ("-l", "--logit-bias"),
    ("--dry-sequence-breaker",),
    ("--image", "--audio", "--video"),
    ("--in-file",),
    ("--context-file",),
    ("--tensor-filter",),
    ("--api-key",),
]
REPEATABLE = {spelling: names[0] for names in _REPEATABLE_SPELLINGS for spelling in names}

#: Flags whose value is a credential (or the path to one): common/arg.cpp ``-hft/--hf-token``,
#: ``--api-key``, ``--api-key-file`` and tools/server's ``--ssl-key-file``. Their values are never
#: stored or shown; the fingerprint keeps only a hash of the expanded argv.
SECRET_FLAGS = frozenset({"-hft", "--hf-token", "--api-key", "--api-key-file", "--ssl-key-file"})
REDACTED = "<redacted>"


def redact_args(args: list[str]) -> list[str]:
    """``args`` with the value of every secret-bearing flag replaced (``--hf-token=x`` too)."""
    out: list[str] = []
    hide = False
    for tok in args:
        if hide and not _is_flag(tok):
            out.append(REDACTED)
            continue
        hide = False
        flag, eq, _value = tok.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(tok)
                hide = True
            continue
        out.append(tok)
    return out


def _canonical(flag: str) -> str:
    return REPEATABLE.get(flag, flag)


def merge_args(parent: list[str], child: list[str], remove: list[str]) -> list[str]:
    """Merge a child config's args into its parent's.

    A flag the child gives replaces *every* occurrence of that flag in the parent, at the place of
    the parent's first one (so argv diffs stay readable); flags new to the parent are appended.
    For repeatable flags (``-ot``, ``--lora``, ``--override-kv``, ...) that means the child's list
    of occurrences replaces the parent's list: parent ``-ot a -ot b`` + child ``-ot c -ot d`` gives
    ``-ot c -ot d``. To keep a parent's occurrence, repeat it in the child.
    """
    removed = {_canonical(f) for f in remove}
    merged = [(f, vals) for f, vals in group_args(parent) if _canonical(f) not in removed]
    child_groups = group_args(child)
    given: dict[str, list[tuple[str, list[str]]]] = {}
    for f, vals in child_groups:
        given.setdefault(_canonical(f), []).append((f, vals))
    out: list[tuple[str, list[str]]] = []
    placed: set[str] = set()
    for f, vals in merged:
        key = _canonical(f)
        if key not in given:
            out.append((f, vals))
        elif key not in placed:
            out += given[key]
            placed.add(key)
    out += [(f, vals) for f, vals in child_groups if _canonical(f) not in placed]
    return [tok for f, vals in out for tok in (f, *vals)]


# --------------------------------------------------------------------------------------------
# ${VAR} and ${VAR:-default} expansion, with errors that say which variable to set

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: str, *, where: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env and env[name]:
            return env[name]
        if default is not None:
            return default
        raise SpecgateConfigError(
            f"{where} uses ${{{name}}}, but the environment variable {name} is not set. "
            f"Fix: export {name}=/path/to/the/file, or write the path into the config."
        )

    return os.path.expanduser(_VAR.sub(sub, value))
