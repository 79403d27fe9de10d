"""The InfoSAM paper's published numbers (Tables 1–13) and how sweeps map onto them.

Data: ``reports/paper_values/table<N>.csv``, transcribed from the paper (InfoSAM, Zhang et al., ICML
2025, https://arxiv.org/abs/2505.21920; text in ``/work/shared/reference/infosam_paper.md``). One row
per published number: ``row`` (the paper's row name, verbatim), ``label`` (the suite's table row that
reproduces it: a method name, or ``method [variant]`` for ablation rows), ``dataset`` (the paper's
dataset), ``metric`` (a key of :mod:`bench.eval.metrics`; ``time_ms`` for Table 11's timing column), ``mean``
and ``se`` in the paper's units (percent; ``se`` empty where the paper gives none, Table 4).

Transcription notes: the paper's "Jac" (ISIC) is ``iou``; its E_φ is the adaptive E-measure
(``em_adp``, as the official evaluation code). Table 2's "Teacher" row differs from Table 1's "SAM" row on
Kvasir (83.0 vs 71.4 S_α) — both are kept as printed. Table 3 has two parts, (a) and (b), whose shared rows
(SAM2 = Teacher, Adapter = Student, Adapter+Ours = InfoSAM2) carry the same numbers. Table 4 row 2 is mapped
to the paper-text reading (see ``sweeps/table4.yaml``). Table 13's rows are all in its sweep
(Attn-1 / 3 / 5: ``distill.relation_layers`` 1, 3, 5).
Figures 4, 6, 7, 8, 9 print no numbers in the text, so the ``fig*`` sweeps have no paper values.

``convlora_trans10k.csv`` holds the Conv-LoRA paper's multi-class table (Trans10K-v2: Acc, mIoU and the 12
category IoUs of TransLab, Trans2Seg, decoder-only, VPT, LoRA and Conv-LoRA; no standard errors), from the
Conv-LoRA poster (``/work/shared/reference/convlora_poster.md``); the poster's "bg" column is ``iou_background``
(the run key of the class the suite's ``trans10k`` names ``background``). Sweep ``convlora_trans10k`` reads it;
its values compare with runs of the ``convlora`` protocol only (:data:`TABLE_PROTOCOLS`).

``convlora_table.csv`` holds the Conv-LoRA poster's binary table (sweep ``convlora_table``, also compared under
the ``convlora`` protocol only): Kvasir and CVC-612 S_α, E_φ; ISIC 2017 Jac (``iou``), Dice; CAMO S_α, E_φ,
F_β^w; SBU BER; Leaf and Road IoU, Dice; rows "Domain Specific" (``domain_specific``, not a suite method),
"SAM trained from scratch" (``scratch``), decoder-only and the PEFT methods, ± SE where printed (none for the
first three rows). E_φ is ``em_mean``, the mean of the 256-threshold curve Conv-LoRA's evaluation code reports
(:mod:`bench.eval.metrics_convlora`). The Dice columns are transcribed although the ``convlora`` protocol does not
report Dice (its code computes none), so they show in no report column. The "#Params (M) / Ratio (%)" column is
not transcribed here (a value here belongs to one dataset, a count to none): :mod:`reports.params` holds it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

VALUES_DIR = Path(__file__).resolve().parent / "paper_values"

# sweep name -> paper table id (a file in paper_values/); sweeps not listed have no paper values
SWEEP_TABLES: dict[str, str] = {f"table{n}": f"table{n}" for n in range(1, 14)} | {
    "convlora_table": "convlora_table",
    "convlora_trans10k": "convlora_trans10k",
}
INFOSAM_TABLE = re.compile(r"table(\d+)")  # the InfoSAM tables' ids; every other csv is another paper's table

# paper table -> the protocol whose runs its values compare with; a table not listed is InfoSAM's, comparable
# with the runs of every protocol that sets ``paper_tables``
TABLE_PROTOCOLS: dict[str, str] = {"convlora_table": "convlora", "convlora_trans10k": "convlora"}
# paper table -> how the legend cites it; a table not listed is InfoSAM's ("InfoSAM (ICML 2025) Table N")
TABLE_SOURCES: dict[str, str] = {
    "convlora_table": "Conv-LoRA (ICLR 2024), binary-segmentation table",
    "convlora_trans10k": "Conv-LoRA (ICLR 2024), Trans10K-v2 table",
}


@dataclass(frozen=True)
class PaperDataset:
    """A dataset of the paper: its display name, suite names of its real loader, its synthetic stand-in."""

    name: str
    real: tuple[str, ...]
    standin: Optional[str] = None


PAPER_DATASETS: tuple[PaperDataset, ...] = (
    PaperDataset("CAMO", ("camo",), "synth_camo"),
    PaperDataset("CHAMELEON", ("chameleon",)),
    PaperDataset("COD10K", ("cod10k",)),
    PaperDataset("ISIC 2017", ("isic2017", "isic")),
    PaperDataset("Kvasir", ("kvasir",), "synth_polyp"),
    PaperDataset("CVC-612", ("cvc_clinicdb", "cvc612", "cvc_612")),
    PaperDataset("Leaf", ("leaf", "leaf_disease"), "synth_leaf"),
    PaperDataset("Road", ("massachusetts_roads", "road", "roads"), "synth_road"),
    PaperDataset("SBU", ("sbu",)),  # Conv-LoRA's binary table only
    PaperDataset("Trans10K-v2", ("trans10k",), "synth_shapes"),  # Conv-LoRA's multi-class table
)


@dataclass(frozen=True)
class PaperValue:
    """One published number (percent)."""

    table: str
    row: str
    label: str
    dataset: str
    metric: str
    mean: float
    se: Optional[float]


def paper_dataset(suite_name: str) -> tuple[Optional[str], bool]:
    """The paper dataset a suite dataset is or stands for, and whether it is a synthetic stand-in."""
    for ds in PAPER_DATASETS:
        if suite_name in ds.real:
            return ds.name, False
        if suite_name == ds.standin:
            return ds.name, True
    return None, False


def canonical_label(label: str) -> str:
    """Normalise a row label for matching: a lone distiller gets the default student (``vid`` ->
    ``adapter+vid``, as ``bench.contracts.methods.resolve_method``), and ``=2.0`` reads as ``=2``."""
    base, sep, variant = label.partition(" [")
    try:
        from bench.contracts.methods import resolve_method

        spec = resolve_method(base)
        if spec.distiller and "+" not in base:
            base = f"{spec.peft}+{base}"
    except (ImportError, ValueError, KeyError):
        pass  # unknown to the registry (e.g. a paper row not implemented yet): keep it as written
    variant = re.sub(r"=(-?\d+)\.0+(?=\D|$)", r"=\1", variant)
    return base + sep + variant


def _parse(path: Path) -> list[PaperValue]:
    out = []
    with path.open(newline="") as fh:
        for i, rec in enumerate(csv.DictReader(fh), start=2):
            try:
                out.append(
                    PaperValue(
                        table=path.stem,
                        row=rec["row"],
                        label=rec["label"],
                        dataset=rec["dataset"],
                        metric=rec["metric"],
                        mean=float(rec["mean"]),
                        se=float(rec["se"]) if rec["se"] else None,
                    )
                )
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}:{i}: malformed paper value ({err})") from None
    return out


@lru_cache(maxsize=None)
def load_table(table: str) -> tuple[PaperValue, ...]:
    """All published values of one table (e.g. ``"table1"``); an unknown table raises ``KeyError``."""
    path = VALUES_DIR / f"{table}.csv"
    if not path.is_file():
        raise KeyError(f"no paper values for {table!r}; available: {', '.join(available_tables())}")
    return tuple(_parse(path))


def available_tables() -> list[str]:
    """The InfoSAM tables in their order (``table1`` .. ``table13``), then the other papers' tables by name."""
    stems = [p.stem for p in VALUES_DIR.glob("*.csv")]
    infosam = sorted((s for s in stems if INFOSAM_TABLE.fullmatch(s)), key=lambda s: int(s[5:]))
    return infosam + sorted(s for s in stems if not INFOSAM_TABLE.fullmatch(s))


def lookup(table: str) -> dict[tuple[str, str, str], PaperValue]:
    """``(canonical label, paper dataset, metric) -> value`` of one table. Rows that appear twice with
    the same numbers (Table 3's shared rows) collapse; conflicting duplicates raise ``ValueError``."""
    out: dict[tuple[str, str, str], PaperValue] = {}
    for v in load_table(table):
        key = (canonical_label(v.label), v.dataset, v.metric)
        if key in out and (out[key].mean, out[key].se) != (v.mean, v.se):
            raise ValueError(f"{table}: conflicting paper values for {key}: {out[key]} vs {v}")
        out.setdefault(key, v)
    return out


def sweep_table(sweep: str) -> Optional[str]:
    """The paper table a sweep reproduces, if any."""
    return SWEEP_TABLES.get(sweep)


def comparable(sweep: str, protocol: str, paper_tables: bool) -> bool:
    """Whether runs of ``protocol`` (whose ``Protocol.paper_tables`` is ``paper_tables``) compare with the
    published values of the table ``sweep`` reproduces: a table of :data:`TABLE_PROTOCOLS` with runs of its
    protocol only; any other sweep (an InfoSAM table, or none) with the protocols that set ``paper_tables``."""
    table = sweep_table(sweep)
    if table in TABLE_PROTOCOLS:
        return protocol == TABLE_PROTOCOLS[table]
    return paper_tables


def table_source(table: str) -> str:
    """How a report's legend cites a paper table (``table3`` -> ``InfoSAM (ICML 2025) Table 3``)."""
    return TABLE_SOURCES.get(table, f"InfoSAM (ICML 2025) {table.replace('table', 'Table ')}")
