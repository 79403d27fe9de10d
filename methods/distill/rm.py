"""``rm``: InfoSAM's relation module and its losses as an add-on to another distiller (InfoSAM Table 5).

Paper: InfoSAM, Zhang et al., ICML 2025, https://arxiv.org/abs/2505.21920 (§5.4 "Effects of Relation
Module", Table 5: TinySAM and MobileSAM "w RM"). ``rm`` is a thin subclass of
:class:`methods.infosam.InfoSAM` registered under a second name: the same relation module, λ1·L_r and
λ2·L_d, and the same options (``distill.rm.*`` when chained, e.g. ``tinysam+rm``). Alone (``rm`` =
``adapter+rm``) it is exactly ``adapter+infosam``; its purpose is the chained form, where
:mod:`bench.contracts.composite` adds its terms to the other distiller's.
"""

from __future__ import annotations

from bench.contracts.distill import DISTILLERS
from methods.infosam import InfoSAM


@DISTILLERS.register("rm", same_embed_width=True)
class RelationModuleAddOn(InfoSAM):
    """InfoSAM's L_r + L_d under the name ``rm`` (no behaviour of its own)."""
