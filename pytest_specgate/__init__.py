"""pytest-specgate: a regression gate for llama-server serving configs.

The public surface is deliberately small; everything else is an implementation detail.
"""

from pytest_specgate.config import Budget, ServingConfig, SpecgateFile
from pytest_specgate.measure import Measurement, Verdict
from pytest_specgate.sample import Sample

__all__ = ["Budget", "Measurement", "Sample", "ServingConfig", "SpecgateFile", "Verdict"]
__version__ = "0.1.0"
