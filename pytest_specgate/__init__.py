"""pytest-specgate: a regression gate for llama-server serving configs.

The public surface for suite authors is what ``__all__`` lists; ``suites/`` imports nothing else from
the package, and everything else is an implementation detail that may move.
"""

from pytest_specgate.config import Budget, ServingConfig, SpecgateFile
from pytest_specgate.measure import lossless, workloads
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.sample import Sample
from pytest_specgate.measure.stats import crossover_point, crossovers, paired_ratios
from pytest_specgate.snapshots import (
    config_extension,
    reference_mismatch,
    tool_call_markers,
    tool_call_matcher,
    tool_call_record,
)
from pytest_specgate.verdict.budget import BudgetResult, Verdict, check_budget

__all__ = [
    "Budget",
    "BudgetResult",
    "Measurement",
    "Sample",
    "ServingConfig",
    "SpecgateFile",
    "Verdict",
    "check_budget",
    "config_extension",
    "crossover_point",
    "crossovers",
    "lossless",
    "paired_ratios",
    "reference_mismatch",
    "tool_call_markers",
    "tool_call_matcher",
    "tool_call_record",
    "workloads",
]
__version__ = "0.1.0"
