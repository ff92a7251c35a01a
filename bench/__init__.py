"""Benchmarks that print ratios measured in one run (never absolute times in tests)."""
