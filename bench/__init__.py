"""relay's benchmark suite: `python -m bench` (see bench/__main__.py and README "Performance").

Benchmarks are not tests: nothing here asserts on time; it measures, side by side in one
run, and prints a table.
"""
