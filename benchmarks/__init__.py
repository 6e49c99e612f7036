"""Benchmarks, run as `python -m benchmarks [NAME ...]` (`make bench`); results in bench-results/.

Each benchmark is a module with a `BENCHMARK` (see `registry.Benchmark`) listed in
`catalog.py`; adding one (the operator's 500 TranscodeJobs to Queued, the autoscaler's
reaction) is a new module and one line there.
"""
