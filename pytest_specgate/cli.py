"""`specgate` command: provisioning, stored-results tools that do not need a pytest run, and `init`.

``baseline promote`` exists because a CI job cannot know which run was good: the deploy decides,
later, and then names a stored run (``latest``, a run id or a path) as the baseline the next runs
compare against. ``init`` copies the shipped suites and a starter config and workflow into another
repository, refusing to overwrite anything it did not write unless told to.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from pytest_specgate.errors import SpecgateError
from pytest_specgate.options import RESULTS_ENV
from pytest_specgate.provision.catalog import add_provision_arguments, provision_from_args
from pytest_specgate.report.write import write_all
from pytest_specgate.store import list_baselines, load, promote, recent_runs
from pytest_specgate.verdict.baseline import compare

_DATA = Path(__file__).parent / "data"
#: what `specgate init` writes, relative to the target directory, from files shipped in the package
STARTER = {"specgate.toml": _DATA / "starter-specgate.toml",
           ".github/workflows/specgate.yml": _DATA / "starter-workflow.yml"}


def suites_dir() -> Path:
    """The shipped suites: ``pytest_specgate.suites`` when installed from the wheel, else the checkout's ``suites/``."""
    spec = importlib.util.find_spec("pytest_specgate.suites")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "suites"


def init_files(target: Path) -> dict[Path, Path]:
    """destination -> source for everything ``specgate init`` writes."""
    files = {target / dest: src for dest, src in STARTER.items()}
    src_suites = suites_dir()
    for src in sorted(src_suites.rglob("*")):
        rel = src.relative_to(src_suites)
        if src.is_file() and "__pycache__" not in rel.parts and rel.name != "__init__.py":
            files[target / "suites" / rel] = src
    return files


def init(target: Path, force: bool) -> list[Path]:
    files = init_files(target)
    existing = [dest for dest in files if dest.exists()]
    if existing and not force:
        shown = ", ".join(str(p.relative_to(target)) for p in existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise SpecgateError(f"init would overwrite {len(existing)} file(s) in {target}: {shown}. "
                            f"Fix: move them aside, or pass --force to overwrite them.")
    for dest, src in files.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return list(files)


def _results_dir(value: Path | None) -> Path:
    return (value or Path(os.environ.get(RESULTS_ENV, "").strip() or ".specgate")).expanduser()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specgate", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    prov = sub.add_parser("provision", help="build the pinned llama-server (CPU, or CUDA with a GPU), assemble the "
                          "demo model, make synthetic GGUFs (and production-shaped ones with --shape)")
    add_provision_arguments(prov)
    rep = sub.add_parser("report",
                         help="re-render report.{json,md,html} and benchmark-*.json from a stored results file")
    rep.add_argument("results", type=Path, help="a results file: latest.json, runs/*.json, baselines/*.json")
    rep.add_argument("--out", type=Path, default=None, help="directory for the reports (default: the results file's)")
    cmp = sub.add_parser("compare", help="compare two stored runs; exit 1 when a metric regressed beyond its threshold")
    cmp.add_argument("old", type=Path, help="the baseline results file")
    cmp.add_argument("new", type=Path, help="the results file to judge")
    cmp.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval level (default 0.95)")
    base = sub.add_parser("baseline", help="named baselines in the results directory: promote a stored run, list them")
    base_sub = base.add_subparsers(dest="action", required=True)
    results_help = f"the results directory (default: ${RESULTS_ENV}, else .specgate)"
    pro = base_sub.add_parser("promote", help="store a run as the named baseline (e.g. after a deploy)")
    pro.add_argument("run", help="'latest', a run id (runs/<id>.json) or a path to a results file")
    pro.add_argument("--name", required=True, help="the baseline's name, e.g. prod")
    pro.add_argument("--results-dir", type=Path, default=None, help=results_help)
    lst = base_sub.add_parser("list", help="show the named baselines")
    lst.add_argument("--results-dir", type=Path, default=None, help=results_help)
    ini = sub.add_parser("init", help="write a starter specgate.toml, the suites and a workflow into a repository")
    ini.add_argument("directory", type=Path, nargs="?", default=Path("."), help="the repository (default: here)")
    ini.add_argument("--force", action="store_true", help="overwrite files that already exist")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "provision":
            provision_from_args(args)
        elif args.cmd == "report":
            run = load(args.results)
            out = args.out or args.results.parent
            for path in write_all(run, out):
                print(path)
        elif args.cmd == "compare":
            old, new = load(args.old), load(args.new)
            # the trend needs the stored runs beside OLD (<results>/baselines/x.json or <results>/runs/x.json)
            home = args.old.resolve().parent
            results = home.parent if home.name in ("baselines", "runs") else home
            comparison = compare(old, new, new.thresholds, confidence=args.confidence, name=str(args.old),
                                 history=[r for r in recent_runs(results) if r.run_id != new.run_id])
            print("\n".join(comparison.lines(verbose=True)))
            return 1 if comparison.failed else 0
        elif args.cmd == "baseline" and args.action == "promote":
            promoted, path = promote(_results_dir(args.results_dir), args.run, args.name)
            print(f"baseline {args.name!r} <- run {promoted.run_id} (config {promoted.selected}): {path}")
        elif args.cmd == "baseline":
            results = _results_dir(args.results_dir)
            found = list_baselines(results)
            if not found:
                print(f"no baselines in {results / 'baselines'}. "
                      f"Create one: specgate baseline promote latest --name prod --results-dir {results}")
            for b in found:
                kind = "quick" if b.quick else "full"
                print(f"{b.name}\t{b.selected}\t{b.run_id}\t{kind}\t{b.started:%Y-%m-%d %H:%M}Z\t{b.path}")
        elif args.cmd == "init":
            for path in init(args.directory.resolve(), args.force):
                print(path)
            print("next: edit specgate.toml (binary, model, budgets), then: pytest suites/ -m quick")
    except SpecgateError as e:
        print(f"specgate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
