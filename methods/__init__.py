"""Methods: PEFT students (``peft/``), distillers (``distill/``, ``infosam/``).

Every module here registers itself when discovered (:mod:`bench.discovery`); the contracts and the way
method names compose live in :mod:`bench.contracts`.
"""
