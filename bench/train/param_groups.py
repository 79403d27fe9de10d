"""Weight-decay parameter groups (``train.weight_decay_groups``).

* ``all``: one group, every trained parameter decays with ``train.weight_decay``.
* ``automm``: AutoMM's rule (autogluon ``multimodal/optim/utils.py`` ``get_weight_decay_param_names``, used by
  ``apply_single_lr``): the parameters of ``nn.LayerNorm``, ``nn.BatchNorm1d/2d/3d`` and ``nn.GroupNorm``
  modules (by module type, as transformers' ``get_parameter_names``; a custom norm module such as SAM's
  ``LayerNorm2d`` is not one of them, as HF's ``SamLayerNorm`` is not) and every parameter whose name
  contains ``"bias"`` or ``"cls_token"`` get weight decay 0; the rest decays. (AutoMM also exempts its
  tabular tokenizers, which SAM does not have.)
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import nn

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)
EXEMPT_NAME_PARTS = ("bias", "cls_token")


def _names_outside_norms(module: nn.Module) -> list[str]:
    """Parameter names of ``module`` not inside a :data:`NORM_TYPES` module (transformers' ``get_parameter_names``)."""
    names: list[str] = []
    for child_name, child in module.named_children():
        if isinstance(child, NORM_TYPES):
            continue
        names += [f"{child_name}.{n}" for n in _names_outside_norms(child)]
    names += [n for n, p in module._parameters.items() if p is not None]
    return names


def decay_exempt_names(module: nn.Module) -> set[str]:
    """Names (as ``module.named_parameters()`` gives them) that AutoMM's rule leaves out of weight decay."""
    decayed = {n for n in _names_outside_norms(module) if not any(part in n for part in EXEMPT_NAME_PARTS)}
    return {n for n, _ in module.named_parameters() if n not in decayed}


def decay_exempt(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """The trainable parameters of ``modules`` that AutoMM's rule leaves out of weight decay."""
    exempt: list[nn.Parameter] = []
    for module in modules:
        names = decay_exempt_names(module)
        exempt += [p for n, p in module.named_parameters() if n in names and p.requires_grad]
    return exempt


def param_groups(
    rule: str, params: list[nn.Parameter], exempt: Iterable[nn.Parameter], weight_decay: float
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups under ``train.weight_decay_groups=rule``: one group (``all``), or the
    decayed parameters and those of ``exempt`` with weight decay 0 (``automm``; an empty group is left out)."""
    if rule == "all":
        return [{"params": params, "weight_decay": weight_decay}]
    if rule != "automm":
        raise ValueError(f"unknown weight_decay_groups {rule!r}")
    ids = {id(p) for p in exempt}
    groups = [
        {"params": [p for p in params if id(p) not in ids], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in ids], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
