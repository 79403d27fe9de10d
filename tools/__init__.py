"""Measuring tools: ``python -m tools.perf``, ``tools.profile``, ``tools.perf_backbones``, ``tools.gpu_check``.

They time the suite; they are not part of a benchmark run, and nothing under ``bench/`` imports them.
"""
