"""Data: from a dataset's samples to model-ready batches.

Owns image and mask file decoding (:mod:`~bench.data.images`), prompt sampling from ground-truth masks
(:mod:`~bench.data.prompts`), batching with the backbone's preprocessing (:mod:`~bench.data.batches`), the
disk cache of frozen encoder states and the encoder front-ends that read it (:mod:`~bench.data.cache`,
:mod:`~bench.data.encoders`), and the predicted masks a run keeps for the report (:mod:`~bench.data.masks`).

May import: the foundation modules, ``config``, ``contracts``, ``backbones`` and ``hardware``.
"""
