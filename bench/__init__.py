"""Benchmarks that print ratios against the peers, measured in one run (``make bench``)."""
