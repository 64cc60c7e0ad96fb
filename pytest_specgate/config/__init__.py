"""The config file: named serving configs, their workloads and budgets.

A serving config is the thing under test: one llama-server binary, one GGUF, one list of flags.
The file is TOML (``specgate.toml`` or ``[tool.specgate]`` in ``pyproject.toml``) and is parsed
into pydantic models that reject unknown keys, so that a typo such as ``budjets`` fails loudly
instead of silently disabling a gate. Every error names the file, the key and the fix.

The models are in :mod:`~pytest_specgate.config.models`, reading and resolving the file in
:mod:`~pytest_specgate.config.loading`; this package re-exports both, where callers have always found them.
"""

from __future__ import annotations

# argv helpers live in argv.py (a leaf); re-exported here, where callers have always found them
from pytest_specgate.argv import REDACTED as REDACTED
from pytest_specgate.argv import REPEATABLE as REPEATABLE
from pytest_specgate.argv import SECRET_FLAGS as SECRET_FLAGS
from pytest_specgate.argv import expand as expand
from pytest_specgate.argv import flag_values as flag_values
from pytest_specgate.argv import group_args as group_args
from pytest_specgate.argv import merge_args as merge_args
from pytest_specgate.argv import redact_args as redact_args
from pytest_specgate.config.loading import find_config_file as find_config_file
from pytest_specgate.config.loading import load as load
from pytest_specgate.config.models import GATE_FIELDS as GATE_FIELDS
from pytest_specgate.config.models import Budget as Budget
from pytest_specgate.config.models import MetricName as MetricName
from pytest_specgate.config.models import RawConfig as RawConfig
from pytest_specgate.config.models import ServingConfig as ServingConfig
from pytest_specgate.config.models import SpecgateFile as SpecgateFile
from pytest_specgate.config.models import Thresholds as Thresholds
from pytest_specgate.config.models import WorkloadName as WorkloadName
from pytest_specgate.config.models import Workloads as Workloads
from pytest_specgate.errors import SpecgateConfigError as SpecgateConfigError
