"""Checks that run before any model is loaded, so a wrong config fails in seconds, not minutes.

Loading a 27B model takes a while and a bad flag only shows up at the end of it (exit code 1 and a
usage dump). Preflight asks *this* binary what it accepts (its ``--help``), validates the flags and
their enumerated values (``--spec-type mtp`` from an older build fails here, listing today's values),
reads the GGUF header with the ``gguf`` package (architecture, size, MTP layers), and reports every
problem as one paragraph that names the config, the key and the fix.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pytest_specgate._files import sha256_file as _hash_file
from pytest_specgate._proc import scrubbed_env
from pytest_specgate.config import ServingConfig, expand, flag_values, group_args
from pytest_specgate.errors import PreflightError, SpecgateError
from pytest_specgate.gguf_header import NotGGUF, read_header
from pytest_specgate.provision.catalog import provisioned_path
from pytest_specgate.provision.qwen35 import dflash_pair_problem

#: flags the plugin sets itself; a config must not (it would break port allocation or the model swap)
RESERVED = {"-m", "--model", "--port", "--host", "-hf", "--hf-repo", "-mu", "--model-url", "--log-file",
            "--log-disable", "--api-key", "--api-key-file"}
_REMOVED_HINT = {
    "--draft": "--spec-draft-n-max", "--draft-n": "--spec-draft-n-max", "--draft-max": "--spec-draft-n-max",
    "--draft-min": "--spec-draft-n-min", "--draft-n-min": "--spec-draft-n-min", "--no-mmap": "--load-mode none",
    "--mlock": "--load-mode mlock", "--mmap": "--load-mode mmap", "--direct-io": "--load-mode dio",
}


class ModelFacts(BaseModel):
    """What the GGUF header says; also part of a config's fingerprint."""

    model_config = ConfigDict(extra="forbid")

    path: str
    size_bytes: int
    architecture: str
    name: str = ""
    file_type: int | None = None
    context_length: int | None = None
    block_count: int | None = None
    nextn_predict_layers: int = 0
    has_chat_template: bool = False


class BinaryHelp(BaseModel):
    """The flags and enumerated values one llama-server build accepts, read from its ``--help``."""

    model_config = ConfigDict(extra="forbid")

    flags: set[str]
    choices: dict[str, list[str]]
    #: flags the binary still parses only to reject ("the argument has been removed. use ...")
    removed: dict[str, str] = {}


def _provisioned(raw: str, where: str) -> Path | None:
    """``provisioned:NAME`` (binary, model or an arg) resolved by the provision catalog; None otherwise."""
    return provisioned_path(raw.split(":", 1)[1], where=where) if raw.startswith("provisioned:") else None


# ------------------------------------------------------------------------------------------------
# the binary


def resolve_binary(cfg: ServingConfig) -> Path:
    where = f"{cfg.source}: [configs.{cfg.name}] binary"
    raw = cfg.binary
    if (provisioned := _provisioned(raw, where)) is not None:
        return provisioned
    value = expand(raw, where=where)
    var = re.search(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)
    how = (f"set {var.group(1)}=/path/to/llama-server" if var
           else "point `binary` at your llama-server build (for the CPU demo binary run `specgate provision`)")
    if os.sep not in value:
        found = shutil.which(value)
        if not found:
            raise PreflightError(f"{where} = {raw!r}: no executable named {value!r} on PATH. Fix: {how}.")
        return Path(found)
    path = Path(value)
    if not path.is_file():
        raise PreflightError(f"{where} = {raw!r}: {path} does not exist. Fix: {how}.")
    if not os.access(path, os.X_OK):
        raise PreflightError(f"{where}: {path} is not executable. Fix: chmod +x {path}.")
    return path


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


@functools.lru_cache(maxsize=16)
def _help_text(key: str, path: str) -> str:
    try:
        proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20, env=scrubbed_env(),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PreflightError(f"{path} --help could not run: {e}. "
                             "Fix: check that the binary is a llama-server build for this machine.") from None
    if proc.returncode != 0:
        out = proc.stderr or proc.stdout
        said = next((ln.strip() for ln in reversed(out.splitlines()) if ln.strip()), "")
        raise PreflightError(
            f"{path} --help exited with code {proc.returncode} ({said[:160]!r}): llama-server answers --help with "
            f"its usage and exit 0, so this is not llama-server or it does not run here. Fix: point `binary` at "
            f"llama-server; if it is one, rebuild it or check its shared libraries with `ldd {path}`.\n{out[-800:]}"
        )
    return proc.stdout + proc.stderr


_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_WORDS = r"[a-z0-9_.+-]+"
_HEAD_LIST = re.compile(rf"^{_WORDS}(?:,{_WORDS})+$")            # --spec-type none,draft-simple,...
_BRACKETS = re.compile(rf"\[({_WORDS}(?:\|{_WORDS})+)\]")        # -fa [on|off|auto]
_BRACES = re.compile(rf"\{{({_WORDS}(?:,{_WORDS})+)\}}")           # --spec-draft-sampling {greedy,probabilistic}
_ALLOWED = re.compile(r"allowed values:\s*(.+)$")                  # -ctk ... allowed values: f32, f16, ...


def parse_help(text: str) -> BinaryHelp:
    """Read flags and enumerated values from llama-server's ``--help`` layout.

    An option line starts in column 0 with its spellings (``-fa,   --flash-attn [on|off|auto]``),
    the description starts in column 40 (or on the next line); continuation lines are indented. Choices appear as
    a comma list after the flag (``--spec-type none,draft-simple,...``), as ``[a|b|c]``, or as an
    ``allowed values: a, b`` line in the description.
    """
    flags: set[str] = set()
    choices: dict[str, list[str]] = {}
    descriptions: dict[tuple[str, ...], str] = {}
    current: list[str] = []

    def add(values: list[str]) -> None:
        for f in current:
            known = choices.setdefault(f, [])
            known += [v for v in values if v not in known]

    for line in text.splitlines():
        if line.startswith("-") and not line.startswith("---"):
            # descriptions start in column 40; a longer spelling wraps its description to the next line
            head = line[:40] if len(line) > 40 and line[39] == " " else line
            head = head.strip()
            current = _FLAG.findall(head)
            flags.update(current)
            rest = [t for t in re.split(r"[\s]+", head) if t and not _FLAG.fullmatch(t.rstrip(","))]
            for tok in rest:
                if _HEAD_LIST.match(tok):
                    add(tok.split(","))
                elif m := _BRACKETS.fullmatch(tok):
                    add(m.group(1).split("|"))
                elif m := _BRACES.fullmatch(tok):
                    add(m.group(1).split(","))
            body = line[len(head):]
        elif line.startswith(" ") and current:
            body = line
        else:
            current = []
            continue
        if m := _ALLOWED.search(body.strip()):
            add([v.strip() for v in m.group(1).split(",") if v.strip()])
        key = tuple(current)
        descriptions[key] = f"{descriptions.get(key, '')} {body.strip()}".strip()
    removed = {}
    for spellings, text in descriptions.items():
        if "has been removed" in text:
            hint = re.sub(r"\s*\(env: [^)]*\)", "", text.split("has been removed", 1)[1]).strip(" .")
            removed.update({f: hint for f in spellings})
    return BinaryHelp(flags=flags, choices=choices, removed=removed)


#: flags every llama-server's ``--help`` lists (common/arg.cpp, the server examples); llama-bench, llama-cli
#: and scripts lack at least one
SERVER_FLAGS = ("--host", "--port")


def binary_help(path: Path) -> BinaryHelp:
    text = _help_text(_file_key(path), str(path))
    help_ = parse_help(text)
    missing = [f for f in SERVER_FLAGS if f not in help_.flags]
    if missing:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        said = f"its first line is {first[:120]!r}" if first else "it printed nothing"
        raise PreflightError(
            f"{path} is not llama-server: `{path.name} --help` exits 0 but lists no {' or '.join(missing)} flag "
            f"({said}). Fix: point `binary` at llama.cpp's llama-server (build/bin/llama-server), not llama-bench, "
            "llama-cli or a wrapper that does not pass --help through."
        )
    return help_


def check_args(cfg: ServingConfig, help_: BinaryHelp, binary: Path) -> list[str]:
    """Every flag known to this binary, enumerated values valid; returns one problem per line."""
    where = f"{cfg.source}: [configs.{cfg.name}] args"
    problems = []
    for flag, values in group_args(cfg.args):
        if not flag.startswith("-"):
            problems.append(f"{where}: {flag!r} is not a flag. "
                            "Fix: args is a list like [\"-c\", \"4096\", \"-fa\", \"on\"].")
            continue
        if flag in ("--api-key", "--api-key-file"):
            problems.append(f"{where}: {flag} makes llama-server answer 401 to requests without that key, and "
                            f"specgate's client sends none (the server it starts listens on 127.0.0.1 only). "
                            f"Fix: remove {flag} from args; the measured speed does not depend on it.")
            continue
        if flag in RESERVED:
            problems.append(f"{where}: {flag} is set by specgate itself. Fix: remove it from args "
                            f"(use `model =` for the GGUF; the port is chosen per run).")
            continue
        if flag in help_.removed:
            problems.append(f"{where}: {flag} was removed from this binary: {help_.removed[flag]}. "
                            f"Fix: replace it with the new flag.")
            continue
        if flag not in help_.flags:
            hint = f" (it was removed; use {_REMOVED_HINT[flag]})" if flag in _REMOVED_HINT else ""
            problems.append(f"{where}: {flag} is not accepted by {binary}{hint}. Fix: remove or rename it; "
                            f"`{binary} --help` lists the flags this build knows.")
            continue
        allowed = help_.choices.get(flag)
        if allowed and values:
            for v in (x for val in values for x in (val.split(",") if flag == "--spec-type" else [val])):
                if v not in allowed:
                    problems.append(f"{where}: {flag} {v}: {v!r} is not a valid value for this binary. "
                                    f"Valid values: {', '.join(allowed)}.")
    return problems


# ------------------------------------------------------------------------------------------------
# the model


def resolve_model(cfg: ServingConfig) -> Path:
    where = f"{cfg.source}: [configs.{cfg.name}] model"
    raw = cfg.model
    if (provisioned := _provisioned(raw, where)) is not None:
        return provisioned
    path = Path(expand(raw, where=where))
    if not path.is_file():
        var = re.search(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)
        how = (f"set {var.group(1)}=/path/to/model.gguf" if var else f"edit `model` in [configs.{cfg.name}]")
        raise PreflightError(f"{where}: model file {path} does not exist. Fix: {how}.")
    return path


@functools.lru_cache(maxsize=32)
def _model_facts(key: str, path: str) -> ModelFacts:
    p = Path(path)
    try:
        header = read_header(p)
    except NotGGUF as e:
        raise PreflightError(f"{p} is not a readable GGUF file ({e}). Fix: point `model` at a .gguf file, "
                             f"or re-download / re-assemble it.") from None
    arch = str(header.get("general.architecture") or "")
    return ModelFacts(
        path=str(p), size_bytes=p.stat().st_size, architecture=arch,
        name=str(header.get("general.name") or ""),
        file_type=header.get("general.file_type"),
        context_length=header.get(f"{arch}.context_length"),
        block_count=header.get(f"{arch}.block_count"),
        nextn_predict_layers=int(header.get(f"{arch}.nextn_predict_layers") or 0),
        has_chat_template="tokenizer.chat_template" in header,
    )


def model_facts(path: Path) -> ModelFacts:
    return _model_facts(_file_key(path), str(path))


def check_model(cfg: ServingConfig, facts: ModelFacts) -> list[str]:
    spec_types = {t for v in flag_values(cfg.args, "--spec-type") for t in v.split(",")}
    has_draft = any(f in cfg.args for f in ("-md", "--model-draft", "--spec-draft-model"))
    if "draft-mtp" in spec_types and facts.nextn_predict_layers <= 0 and not has_draft:
        return [
            f"{cfg.source}: [configs.{cfg.name}] uses --spec-type draft-mtp, but {facts.path} has no MTP layers "
            f"({facts.architecture}.nextn_predict_layers is {facts.nextn_predict_layers}); "
            f"llama-server would exit with 'failed to create MTP context'. "
            f"Fix: use the MTP variant of the GGUF (e.g. *-mtp.gguf) or pass an MTP head with -md."
        ]
    if "draft-dflash" in spec_types and not has_draft:
        return [
            f"{cfg.source}: [configs.{cfg.name}] uses --spec-type draft-dflash without a drafter model (-md); "
            f"llama-server then serves without drafting a single token and says nothing "
            f"(common/speculative.cpp enables draft-dflash only when a draft context exists). "
            f"Fix: add \"-md\", \"/path/to/dflash-drafter.gguf\" to args (the drafter trained for {facts.path})."
        ]
    return []


_DRAFT_FLAGS = ("-md", "--model-draft", "--spec-draft-model")


def check_drafter(cfg: ServingConfig, model: Path, args: list[str]) -> list[str]:
    """A DFlash drafter must match its target (hidden size, layers it reads, vocabulary), read from both headers.

    The pinned build compares vocabularies only for draft-simple (``common_speculative_are_compatible`` in
    common/speculative.cpp); a DFlash drafter borrows the target's embeddings, so a mismatch serves /health and
    then aborts on the first request (a GGML_ASSERT in ggml-cpu/ops.cpp) instead of refusing to load.
    """
    spec_types = {t for v in flag_values(args, "--spec-type") for t in v.split(",")}
    drafts = [v for f in _DRAFT_FLAGS for v in flag_values(args, f)]
    if "draft-dflash" not in spec_types or not drafts:
        return []
    drafter = Path(drafts[-1])
    if not drafter.is_file():
        return [f"{cfg.source}: [configs.{cfg.name}] args: the draft model {drafter} does not exist. "
                f"Fix: point -md at the DFlash drafter GGUF."]
    problem = dflash_pair_problem(model, drafter)
    return [f"{cfg.source}: [configs.{cfg.name}] {problem}."] if problem else []


# ------------------------------------------------------------------------------------------------


class Resolved(BaseModel):
    """A config after preflight: real paths and facts, ready to start."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    config: ServingConfig
    binary: Path
    binary_sha256: str
    model: Path
    model_facts: ModelFacts
    args: list[str]
    chat_template_file: Path | None = None


@functools.lru_cache(maxsize=16)
def _sha256(key: str, path: str) -> str:
    """In-process memo keyed by (path, size, mtime): preflight runs per config, binaries are shared."""
    return _hash_file(path)


def sha256_file(path: Path) -> str:
    return _sha256(_file_key(path), str(path))


def template_path(cfg: ServingConfig) -> Path | None:
    if not cfg.chat_template_file:
        return None
    raw = cfg.chat_template_file
    if raw.startswith("builtin:"):
        return Path(__file__).parent / "data" / raw.split(":", 1)[1]
    path = Path(expand(raw, where=f"{cfg.source}: [configs.{cfg.name}] chat_template_file"))
    if not path.is_absolute():
        path = Path(cfg.source).parent / path
    if not path.is_file():
        raise PreflightError(f"{cfg.source}: [configs.{cfg.name}] chat_template_file: {path} does not exist. "
                             "Fix: correct the path.")
    return path


def resolve_arg(cfg: ServingConfig, arg: str) -> str:
    """Args may use ${VAR} and ``provisioned:NAME`` (e.g. a draft model made by `specgate provision`)."""
    where = f"{cfg.source}: [configs.{cfg.name}] args"
    if (provisioned := _provisioned(arg, where)) is not None:
        return str(provisioned)
    return expand(arg, where=where) if "${" in arg else arg


def run(cfg: ServingConfig) -> Resolved:
    """All checks for one config; raises one PreflightError listing every problem found.

    Binary and model problems are collected together, so an operator setting up a new machine
    learns about both missing paths from one run.
    """
    problems: list[str] = []
    binary = model = None
    try:
        binary = resolve_binary(cfg)
        problems += check_args(cfg, binary_help(binary), binary)
    except SpecgateError as e:
        problems.append(str(e))
    try:
        model = resolve_model(cfg)
        facts = model_facts(model)
        problems += check_model(cfg, facts)
        args = [resolve_arg(cfg, a) for a in cfg.args]
        problems += check_drafter(cfg, model, args)
        tpl = template_path(cfg)
    except SpecgateError as e:
        problems.append(str(e))
    if problems or binary is None or model is None:
        raise PreflightError("\n".join(problems))
    args += ["--chat-template-file", str(tpl)] if tpl else []
    return Resolved(config=cfg, binary=binary, binary_sha256=sha256_file(binary), model=model, model_facts=facts,
                    args=args, chat_template_file=tpl)
