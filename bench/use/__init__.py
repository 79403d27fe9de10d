"""Using what the suite made or needs: a finished run's model (:mod:`~bench.use.trained`), masks from it
(:mod:`~bench.use.predict`), a self-contained export (:mod:`~bench.use.export`) and downloads of official
checkpoints and public datasets (:mod:`~bench.use.download`).

May import every room below it (``config`` … ``runs``).
"""
