"""The shipped suites, installed as ``pytest_specgate.suites``: ``pytest --pyargs pytest_specgate.suites``.

In a checkout they run as ``pytest suites/``; ``specgate init`` copies them into another repository.
Per-config tool-call snapshots live in ``snapshots/<config>/`` beside them.
"""
