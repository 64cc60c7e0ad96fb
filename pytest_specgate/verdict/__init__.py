"""Verdicts, pure (no I/O, no pytest): budgets judged on a point's interval, runs held against a baseline."""
