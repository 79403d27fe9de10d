"""InfoSAM distiller: relation compression (L_r) and relation distillation (L_d) against a frozen SAM.

Paper: InfoSAM, Zhang et al., ICML 2025, https://arxiv.org/abs/2505.21920 (§4, Eq. 14, Tables 4, 6,
11–13). Official code: github.com/MuyaoYuan/InfoSAM (``distiller/dualmi_distill.py``).

One relation module f is shared by teacher and student: r_T = f(z_i^T, z_m^T), r_S = f(z_i^S, z_m^S).
The terms returned are ``l_r`` = λ1·L_r(z_i^T, z_m^T, r_T) and ``l_d`` = λ2·L_d(r_T, r_S). The teacher
features are detached, so the student gets gradient only from L_d. The relation module gets gradient
from L_r and from L_d, through both r_T and r_S.

Example (Table 4, row 2, paper-text reading)::

    InfoSAM(InfoSAMOptions(use_lr=False, lr_relation="fixed_dot"), context)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from bench.contracts.distill import DISTILLERS, DistillContext, Distiller, Features
from bench.fileio import atomic_torch_save

from .losses import relation_compression_loss, relation_distillation_loss
from .relation import RELATION_KINDS, FixedDotRelation, RelationModule
from .relation_maps import save_relation_maps, to_maps
from .renyi import check_alpha

LR_RELATIONS = ("learned", "fixed_dot")


@dataclass
class InfoSAMOptions:
    """Options of the InfoSAM distiller (defaults: the paper and all five official scripts)."""

    lambda1: float = field(default=1.0, metadata={"help": "weight λ1 of L_r (Eq. 14)"})
    lambda2: float = field(default=0.5, metadata={"help": "weight λ2 of L_d (Eq. 14)"})
    alpha: float = field(default=2.0, metadata={"help": "Rényi order; 2 = Frobenius form, else eigenvalues (Table 11)"})
    use_lr: bool = field(default=True, metadata={"help": "add the relation compression loss L_r (Table 4)"})
    use_ld: bool = field(default=True, metadata={"help": "add the relation distillation loss L_d (Table 4)"})
    regularize: bool = field(
        default=True,
        metadata={"help": "keep the regularisation terms; False = Table 12 'w/o RT' (see losses.py)"},
    )
    relation: str = field(
        default="attn", metadata={"help": f"relation module architecture (Table 13): {RELATION_KINDS}"}
    )
    relation_layers: int = field(
        default=1, metadata={"help": "attention layers of the relation module, 'Attn-n' of Table 13"}
    )
    relation_ckpt: Optional[str] = field(
        default=None, metadata={"help": "load a saved relation-module state dict (Table 6, InfoSAM-T)"}
    )
    relation_frozen: bool = field(
        default=False, metadata={"help": "freeze the relation module (Table 6 uses a frozen, loaded RM)"}
    )
    relation_dim: int = field(default=256, metadata={"help": "width D of the W_Q/W_K projections (scale 1/sqrt(D))"})
    export_epochs: list[int] = field(
        default_factory=list,
        metadata={"help": "epochs after which teacher/student relation maps of 4 test images are saved (Fig. 8/9)"},
    )
    lr_relation: str = field(
        default="learned",
        metadata={
            "help": "Table 4 row 2 reading: 'learned' = the relation module above; 'fixed_dot' = "
            "parameter-free raw dot product (needs use_lr=False)"
        },
    )

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        for name in ("lambda1", "lambda2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (self.use_lr or self.use_ld):
            raise ValueError("use_lr and use_ld are both False: InfoSAM would return no loss term")
        if self.relation not in RELATION_KINDS:
            raise ValueError(f"unknown relation {self.relation!r}; valid: {RELATION_KINDS}")
        if not isinstance(self.relation_layers, int) or self.relation_layers < 1:
            raise ValueError(f"relation_layers must be an int >= 1, got {self.relation_layers!r}")
        if self.relation_layers > 1 and self.relation != "attn":
            raise ValueError(f"relation_layers > 1 needs relation='attn', got relation={self.relation!r}")
        if not isinstance(self.relation_dim, int) or self.relation_dim < 1:
            raise ValueError(f"relation_dim must be an int >= 1, got {self.relation_dim!r}")
        if self.lr_relation not in LR_RELATIONS:
            raise ValueError(f"unknown lr_relation {self.lr_relation!r}; valid: {LR_RELATIONS}")
        if self.lr_relation == "fixed_dot":
            if self.use_lr:
                raise ValueError(
                    "lr_relation='fixed_dot' has no trainable relation, so L_r would be a constant: "
                    "set use_lr=False (Table 4 row 2 uses L_d only)"
                )
            if self.relation_ckpt is not None:
                raise ValueError("lr_relation='fixed_dot' has no relation module to load relation_ckpt into")


@DISTILLERS.register("infosam", same_embed_width=True)
class InfoSAM(Distiller):
    """InfoSAM: λ1·L_r + λ2·L_d over B×B Gram matrices of the batch (use batch 4 with drop_last).

    Table 4 (ablation of L_r and L_d). Row 1 is the adapter baseline without this distiller. Row 3 is the
    default. The paper's table and text disagree on row 2, so both readings are options:

    * ``use_lr=False, lr_relation="fixed_dot"``: the text reading. §5.4 says "row 2 introduces a
      fixed-dot relation module with mutual information-based distillation loss". The relation is a
      parameter-free raw dot product (:class:`FixedDotRelation`, as the official
      ``compute_relation_dot``), and only L_d is used. With no parameters in the relation, L_r would be
      a constant, which fits Table 13's "Dot Product" row: it reports the same numbers as Table 4
      row 2 (Leaf 75.2, Road 61.0).
    * ``use_lr=False, lr_relation="learned"``: the column reading, "without L_r". The learned relation
      module (``relation``, ``relation_layers``) is kept and trained only through L_d (via r_T and r_S).

    Table 6 (InfoSAM-T): ``relation_ckpt=<file from save_relation>, relation_frozen=True``.
    Table 11: ``alpha``. Table 12: ``regularize``. Table 13: ``relation`` / ``relation_layers``.

    Args:
        options: :class:`InfoSAMOptions`.
        context: Embedding widths; teacher and student must match (the relation module is shared).
    """

    Options = InfoSAMOptions

    def __init__(self, options: InfoSAMOptions, context: DistillContext) -> None:
        super().__init__(options, context)
        if context.student_embed_dim != context.teacher_embed_dim:
            raise ValueError(
                "InfoSAM shares one relation module between teacher and student, so their embedding "
                f"widths must match: student_embed_dim={context.student_embed_dim}, "
                f"teacher_embed_dim={context.teacher_embed_dim}"
            )
        if options.lr_relation == "fixed_dot":
            self.relation: torch.nn.Module = FixedDotRelation()
        else:
            self.relation = RelationModule(
                dim=context.teacher_embed_dim,
                kind=options.relation,
                layers=options.relation_layers,
                proj_dim=options.relation_dim,
            )
        if options.relation_ckpt is not None:
            state = torch.load(options.relation_ckpt, map_location="cpu", weights_only=True)
            try:
                self.relation.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"relation checkpoint {options.relation_ckpt}: {err}") from None
        if options.relation_frozen:
            self.relation.requires_grad_(False)

    def forward(self, student: Features, teacher: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Return ``{"l_r": λ1·L_r, "l_d": λ2·L_d}`` (the enabled terms), float32 scalars.

        Args:
            student: Student features; uses ``embedding`` (B, C, h, w) and ``mask_token`` (B, C).
            teacher: Teacher features, same shapes (detached here too).
            batch: Unused.
        """
        opts = self.options
        zt_i, zt_m = teacher.embedding.detach(), teacher.mask_token.detach()
        r_t = self.relation(zt_i, zt_m)
        terms: dict[str, torch.Tensor] = {}
        if opts.use_lr:
            l_r = relation_compression_loss(zt_i, zt_m, r_t, opts.alpha, opts.regularize)
            terms["l_r"] = opts.lambda1 * l_r
        if opts.use_ld:
            r_s = self.relation(student.embedding, student.mask_token)
            terms["l_d"] = opts.lambda2 * relation_distillation_loss(r_t, r_s, opts.alpha, opts.regularize)
        return terms

    def on_epoch_end(self, epoch: int, probe: Callable[[], tuple[Features, Optional[Features]]], run_dir: Path) -> None:
        """Save relation maps of the probe images after the epochs listed in ``export_epochs``."""
        if epoch not in self.options.export_epochs:
            return
        student, teacher = probe()
        assert teacher is not None
        with torch.no_grad():
            r_t = self.relation(teacher.embedding, teacher.mask_token)
            r_s = self.relation(student.embedding, student.mask_token)
        h, w = teacher.embedding.shape[-2:]
        names = [f"image {i}" for i in range(r_t.shape[0])]
        save_relation_maps(run_dir / "relation_maps", epoch, to_maps(r_t, h, w), to_maps(r_s, h, w), names)

    def save_artifacts(self, run_dir: Path) -> None:
        """Save the trained relation module as ``relation.pt`` (load it elsewhere with
        ``distill.relation_ckpt=<run_dir>/relation.pt distill.relation_frozen=true``, Table 6)."""
        self.save_relation(str(Path(run_dir) / "relation.pt"))

    def save_relation(self, path: str) -> None:
        """Save the relation module's state dict (load it with ``relation_ckpt=path``)."""
        atomic_torch_save(path, self.relation.state_dict())
