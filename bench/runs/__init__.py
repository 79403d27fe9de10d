"""Runs: a sweep expanded into runs, each executed once into its own directory.

Owns the sweep expansion and run hashes (:mod:`~bench.runs.sweep`), the files a run reads besides its data
and their digests (:mod:`~bench.runs.inputs`), the results store (:mod:`~bench.runs.results`), the
reproducibility record (:mod:`~bench.runs.provenance`) with the source tree's digest (:mod:`~bench.runs.source`),
one run end to end (:mod:`~bench.runs.runner`) and the launchers that execute
a sweep's pending runs through submitit (:mod:`~bench.runs.launcher`).

May import every room below it (``config`` … ``train``).
"""
