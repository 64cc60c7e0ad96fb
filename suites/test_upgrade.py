"""The upgrade verdict: is the candidate slower than the deployed config, measured side by side?

Run with the deployed config named: ``pytest suites/ --specgate-config=NEW --specgate-against=DEPLOYED``
(or an ``against`` key in NEW's config). Both are measured in this session, in ABBA blocks spanning
every sweep point, each block on a fresh model load (``ab_loads``, 12), so drift of the machine hits
both alike and the spread between loads is in the interval; decode is judged on the blocks' means
against the file's ``[thresholds]``. Without a deployed config these tests skip.
"""

import pytest


@pytest.mark.specgate_workload("sweep")
def test_decode_against_the_deployed_config(specgate_against, specgate_output_len):
    changes = specgate_against("sweep", specgate_output_len)
    assert changes, "no upgrade verdict was made"
