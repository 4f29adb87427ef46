"""Benchmarks: they print figures and ratios, they never pass or fail.

Run them through ``./dev bench <name>`` (``./dev bench broker`` runs
:mod:`bench.broker`); see ``bench/README.md``.
"""
