"""The application layer: the commands users type (:mod:`~bench.app.cli`), ``--help``
(:mod:`~bench.app.help`) and ``score`` (:mod:`~bench.app.score`).

The only room of ``bench/`` that may import ``reports/`` (``run`` ends with the sweep's table); it may
import every room of ``bench/``.
"""
