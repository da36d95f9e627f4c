"""`python -m benchmarks [--quick]`: the whole suite; see benchmarks/suite.py."""

from benchmarks.suite import main

main()
