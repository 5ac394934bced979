"""Reliability suite: faults, hostile input and load (issue 5)."""
