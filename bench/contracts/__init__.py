"""The contracts plugins implement, and their registries (filled by discovery, :mod:`bench.discovery`).

- :mod:`bench.contracts.peft`: :class:`PeftMethod`, ``PEFT_METHODS`` (``methods/peft/``).
- :mod:`bench.contracts.distill`: :class:`Distiller`, :class:`Features`, ``DISTILLERS`` (``methods/distill/``,
  ``methods/infosam/``); :mod:`bench.contracts.composite` chains several distillers.
- :mod:`bench.contracts.dataset`: :class:`SegmentationDataset`, ``DATASETS`` (``datasets/``).
- :mod:`bench.contracts.methods`: how a method name resolves to (PEFT, distillers, options).
- :mod:`bench.contracts.options`: options dataclasses from config dicts.

Backbones keep their contract beside their folder: :mod:`bench.contracts.backbone`.
"""
