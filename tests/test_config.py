"""Unit tests of the config file: loading, ``extends``, validation errors, ${VAR} expansion."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from pytest_specgate.config import (
    Budget,
    MetricName,
    ServingConfig,
    expand,
    find_config_file,
    load,
    merge_args,
)
from pytest_specgate.errors import SpecgateConfigError
from pytest_specgate.metrics import BUDGET_METRICS

REPO_TOML = Path(__file__).resolve().parents[1] / "specgate.toml"

BASE = """
[configs.base]
binary = "/opt/llama-server"
model = "/models/m.gguf"
args = ["-c", "4096", "-fa", "on", "-t", "2", "--jinja"]
env = { A = "1", B = "2" }
workloads = { sweep = [100, 500], samples = 5 }

[[configs.base.budgets]]
metric = "decode_tps"
point = 500
min = 20

[[configs.base.budgets]]
metric = "ttft_ms"
workload = "latency"
max = 300
"""


def write(tmp_path: Path, text: str, name: str = "specgate.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, name: str = "specgate.toml"):
    return load(write(tmp_path, text, name))


def config_error(tmp_path: Path, text: str, name: str = "specgate.toml") -> str:
    with pytest.raises(SpecgateConfigError) as exc:
        load_text(tmp_path, text, name)
    return str(exc.value)


def test_load_good_file(tmp_path):
    f = load_text(tmp_path, 'default = "base"\n' + BASE)
    cfg = f.get("base")
    assert f.default == "base"
    assert f.path == str(tmp_path / "specgate.toml")
    assert cfg.name == "base" and cfg.source == f.path
    assert cfg.binary == "/opt/llama-server"
    assert cfg.args == ["-c", "4096", "-fa", "on", "-t", "2", "--jinja"]
    assert cfg.workloads.sweep == [100, 500] and cfg.workloads.samples == 5
    assert cfg.workloads.max_samples == 10  # untouched default: two looks, at 5 and 10
    assert [b.key for b in cfg.budgets] == [("decode_tps", "sweep", 500, ">="), ("ttft_ms", "latency", None, "<=")]
    assert cfg.budgets_for("sweep", 500)[0].describe() == "decode_tps >= 20 at sweep@500"


def test_extends_merges_args_env_workloads_budgets(tmp_path):
    f = load_text(tmp_path, BASE + """
[configs.child]
extends = "base"
reference = "base"
args = ["-fa", "off", "--spec-type", "ngram-mod"]
args_remove = ["-t"]
env = { B = "20", C = "3" }
workloads = { samples = 9 }

[[configs.child.budgets]]
metric = "decode_tps"
point = 500
min = 30

[[configs.child.budgets]]
metric = "acceptance"
point = 500
min = 0.5
""")
    child = f.get("child")
    # -fa replaced in place, -t and its value dropped, new flags appended, parent's order kept
    assert child.args == ["-c", "4096", "-fa", "off", "--jinja", "--spec-type", "ngram-mod"]
    assert child.env == {"A": "1", "B": "20", "C": "3"}
    assert child.workloads.sweep == [100, 500] and child.workloads.samples == 9
    assert child.binary == "/opt/llama-server" and child.reference == "base"
    limits = {b.key: b.limit for b in child.budgets}
    assert limits == {("decode_tps", "sweep", 500, ">="): 30, ("ttft_ms", "latency", None, "<="): 300,
                      ("acceptance", "sweep", 500, ">="): 0.5}
    # the parent is unchanged
    assert f.get("base").args[:4] == ["-c", "4096", "-fa", "on"]


def test_merge_args_flag_without_value_and_negative_numbers():
    merged = merge_args(["--jinja", "-n", "-1"], ["-n", "64", "--no-warmup"], [])
    assert merged == ["--jinja", "-n", "64", "--no-warmup"]
    assert merge_args(["-c", "1", "-ngl", "all"], [], ["-ngl"]) == ["-c", "1"]


def test_unknown_reference_is_named(tmp_path):
    msg = config_error(tmp_path, BASE + '[configs.x]\nextends = "base"\nreference = "ghost"\n')
    assert "'ghost'" in msg and "configs.x.reference" in msg and "Fix" in msg


def test_unknown_extends_is_named(tmp_path):
    msg = config_error(tmp_path, BASE + '[configs.x]\nextends = "ghost"\n')
    assert "'ghost'" in msg and "configs.x.extends" in msg


def test_extends_loop_is_detected(tmp_path):
    msg = config_error(tmp_path, """
[configs.a]
extends = "b"
binary = "x"
model = "y"
[configs.b]
extends = "a"
""")
    assert "loop" in msg and "a -> b -> a" in msg


def test_unknown_key_names_file_key_and_fix(tmp_path):
    path = write(tmp_path, BASE.replace("[configs.base]", "[configs.demo]").replace("configs.base.", "configs.demo.")
                 + '[[configs.demo.budjets]]\nmetric = "decode_tps"\nmin = 1\n')
    with pytest.raises(SpecgateConfigError) as exc:
        load(path)
    msg = str(exc.value)
    assert str(path) in msg and "configs.demo.budjets" in msg and "Fix" in msg


def test_unknown_workload_key_is_an_error(tmp_path):
    msg = config_error(tmp_path, BASE.replace("samples = 5", "sampels = 5"))
    assert "configs.base.workloads.sampels" in msg


@pytest.mark.parametrize("limits", ["min = 1\nmax = 2", ""])
def test_budget_needs_exactly_one_of_min_max(tmp_path, limits):
    msg = config_error(tmp_path, BASE + f'[[configs.base.budgets]]\nmetric = "wall_ms"\n{limits}\n')
    assert "configs.base.budgets.2" in msg and "exactly one of `min`" in msg
    with pytest.raises(ValidationError):
        Budget.model_validate({"metric": "wall_ms", **({"min": 1, "max": 2} if limits else {})})


def test_invalid_metric_lists_valid_values(tmp_path):
    msg = config_error(tmp_path, BASE + '[[configs.base.budgets]]\nmetric = "decode_tsp"\nmin = 1\n')
    assert "configs.base.budgets.2.metric" in msg
    assert "'decode_tps'" in msg and "'acceptance'" in msg and "'vram_peak_mib'" in msg


def test_unknown_top_level_key(tmp_path):
    msg = config_error(tmp_path, "[configz.x]\n" + BASE)
    assert "configz" in msg and "Fix" in msg


def test_pyproject_tool_specgate(tmp_path):
    py = BASE.replace("[configs.", "[tool.specgate.configs.").replace("[[configs.", "[[tool.specgate.configs.")
    f = load_text(tmp_path, '[project]\nname = "x"\n' + py, "pyproject.toml")
    assert list(f.configs) == ["base"] and f.default == "base"
    msg = config_error(tmp_path, py + "[tool.specgate.configs.base.env2]\n", "pyproject.toml")
    assert "tool.specgate.configs.base.env2" in msg


def test_find_config_file_searches_parents(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    write(tmp_path / "a", "[project]\n", "pyproject.toml")  # no [tool.specgate]: not a config
    found = find_config_file(deep)
    assert found is None or tmp_path not in found.parents
    toml = write(tmp_path, BASE)
    assert find_config_file(deep) == toml
    py = write(tmp_path / "a" / "b", "[tool.specgate]\n", "pyproject.toml")
    assert find_config_file(deep) == py


def test_expand(monkeypatch):
    monkeypatch.delenv("SPECGATE_T_UNSET", raising=False)
    monkeypatch.setenv("SPECGATE_T_SET", "/x")
    assert expand("${SPECGATE_T_SET}/m.gguf", where="w") == "/x/m.gguf"
    assert expand("${SPECGATE_T_UNSET:-/d/m.gguf}", where="w") == "/d/m.gguf"
    assert expand("${V}", where="w", environ={"V": "/from/dict"}) == "/from/dict"
    with pytest.raises(SpecgateConfigError) as exc:
        expand("${SPECGATE_T_UNSET}/m.gguf", where="f.toml: [configs.x] model")
    msg = str(exc.value)
    assert "SPECGATE_T_UNSET" in msg and "export SPECGATE_T_UNSET=" in msg and "[configs.x] model" in msg


@pytest.mark.parametrize(("args", "expected"), [
    (["--spec-type", "ngram-mod"], True),
    (["--spec-type", "none"], False),
    (["-c", "4096"], False),
    (["--spec-type", "none,ngram-mod"], True),
    (["--spec-default"], True),
])
def test_speculative(args, expected):
    assert ServingConfig(name="x", binary="b", model="m", args=args).speculative is expected


def test_expect_speculative_overrides_flags():
    cfg = ServingConfig(name="x", binary="b", model="m", args=["--spec-type", "ngram-mod"], expect_speculative=False)
    assert cfg.speculative is False


def test_get_unknown_lists_known_configs(tmp_path):
    f = load_text(tmp_path, BASE + '[configs.other]\nextends = "base"\n')
    with pytest.raises(SpecgateConfigError) as exc:
        f.get("nope")
    assert "'nope'" in str(exc.value) and "Known configs: base, other" in str(exc.value)


def test_repo_specgate_toml_mtp_inherits_autoregressive():
    f = load(REPO_TOML)
    ar, mtp = f.get("autoregressive"), f.get("mtp")
    assert f.default == "demo"
    assert mtp.args == ar.args + ["--spec-type", "draft-mtp", "--spec-draft-n-max", "6", "--spec-draft-p-min", "0.75"]
    assert mtp.speculative and not ar.speculative
    assert mtp.reference == "autoregressive"
    assert [b.limit for b in ar.budgets_for("sweep", 2000) if b.metric == "decode_tps"] == [27]
    assert [b.limit for b in mtp.budgets_for("sweep", 2000) if b.metric == "decode_tps"] == [44]
    assert mtp.budgets_for("memory", None)[0].metric == "vram_peak_mib"
    assert f.get("demo-ngram").args[-2:] == ["--spec-type", "ngram-mod"]


def test_budget_metric_names_are_the_metric_tables_budgetable_rows() -> None:
    """config.MetricName (a Literal, for pydantic's error messages) must name exactly metrics.BUDGET_METRICS."""
    assert set(get_args(MetricName)) == BUDGET_METRICS
