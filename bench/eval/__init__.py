"""Evaluation: one image's logits scored under every metric definition (:mod:`~bench.eval.evaluate`), the
clean definitions (:mod:`~bench.eval.metrics`), the public codes' definitions
(:mod:`~bench.eval.metrics_infosam`, :mod:`~bench.eval.metrics_convlora`), the multi-class semantic-segmentation
metrics under both kinds of definition (:mod:`~bench.eval.semantic`) and the checkpoint choice
(:mod:`~bench.eval.selection`).

May import: the foundation modules, ``config``, ``contracts``, ``backbones``, ``hardware`` and ``data``.
"""
