"""Protocols: one file each, registering one :class:`bench.config.protocols.Protocol`.

A protocol names a whole recipe and evaluation (``protocol=NAME``): config presets (transforms, schedule,
loss, precision, selection rule), per-method and per-dataset defaults, the metric definition its tables
report and, where that definition is its own, the per-image scoring function. A new protocol is one file
here (files starting with ``_`` are not discovered); it may import ``bench`` and nothing else of the suite.
"""
