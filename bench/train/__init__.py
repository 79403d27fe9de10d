"""Training: the one loop for every method (:mod:`~bench.train.trainer`), the structure losses
(:mod:`~bench.train.losses`), checkpoint resume (:mod:`~bench.train.resume`) and DDP
(:mod:`~bench.train.distributed`).

May import every room below it: the foundation modules, ``config``, ``contracts``, ``backbones``,
``hardware``, ``data`` and ``eval`` (the trainer scores candidate epochs through ``eval.selection``).
"""
