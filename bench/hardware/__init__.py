"""Hardware: device choice, precision (autocast), channels-last and ``torch.compile``
(:mod:`~bench.hardware.accel`); peak memory, activation checkpointing and gradient accumulation checks
(:mod:`~bench.hardware.memory`).

May import: the foundation modules, ``config`` and ``contracts``.
"""
