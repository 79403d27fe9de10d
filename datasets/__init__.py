"""Datasets: one module per family, each registering its variants (bench.contracts.dataset).

Every module here registers itself when discovered (bench.discovery); adding a file is all it takes.
"""
