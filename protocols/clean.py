"""``clean``: the suite's own definitions (the default, for the demo and for new work).

RGB input, SAM's normalise-then-pad, exact test boxes, pixel-weighted structure loss, cosine schedule that
reaches ``min_lr`` on the last step, bf16 autocast on a GPU, fp16 encoder cache, identity-at-init adapters,
metrics on sigmoid probabilities (``py_sod_metrics``, min-max rescaled, Fβw with β = 1, IoU/Dice at 0.5:
:mod:`bench.eval.metrics`, the base definition every run is scored under), the checkpoint chosen on the
validation split among the last epochs. These are the schema's defaults: the preset only sets the selection
rule.
"""

from __future__ import annotations

from bench.config.protocols import Protocol, register_protocol

CLEAN = Protocol(
    name="clean",
    summary="clean definitions (sigmoid probabilities, RGB, exact test boxes)",
    order=0,
    preset={"eval.select": "val_best"},
    metrics="clean",
)

register_protocol(CLEAN)
