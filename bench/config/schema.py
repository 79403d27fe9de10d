"""Typed configuration: dataclass defaults ← sweep YAML ← ``key=value`` overrides.

The schema below is the single source of defaults (DESIGN.md protocol). OmegaConf merges YAML and
command-line overrides onto it, so an unknown key or a wrong type fails at once with the key's name.
Method- and dataset-specific options live in free-form ``peft``/``distill`` dicts that the
registered method validates against its own options dataclass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration mistake a user can fix; the message names the key and the valid choices."""


@dataclass
class BackboneConfig:
    name: str = "litemedsam"
    checkpoint: Optional[str] = None  # path; None = bundled weights (litemedsam) or random init
    img_size: Optional[int] = None  # None = the backbone's native input size
    # a full-size backbone without a checkpoint is refused unless random weights are asked for (tests, timing)
    random_init: bool = False
    checkpoints_dir: str = "checkpoints"  # where `download` puts official checkpoints and backbones find them
    # keep only the first n of the decoder's mask tokens (and their hypernetwork MLPs); None = all (SAM: 4).
    # 1 = Conv-LoRA's num_mask_tokens=1: the two-way transformer then sees the IoU token and one mask token
    mask_tokens: Optional[int] = None


@dataclass
class TeacherConfig:
    backbone: Optional[str] = None  # None = same as the student's backbone
    checkpoint: Optional[str] = None
    img_size: Optional[int] = None


@dataclass
class TrainConfig:
    epochs: Optional[int] = None  # None = the dataset's protocol (10; 20 for Massachusetts Roads)
    batch_size: int = 4
    lr: float = 2e-4
    min_lr: float = 2e-5
    prompt: str = "mixed"  # "mixed": GT boxes or GT points per batch (box_prob); "none": promptless (Conv-LoRA)
    box_prob: float = 0.5  # share of batches prompted by a noisy GT box; the rest by GT points
    box_jitter: float = 5.0  # max box noise in pixels at a 1024-px input, scaled to img_size
    # "corners": independent uniform noise on each coordinate; "translate": the public InfoSAM code's
    # get_single_box_from_mask (one integer shift of the whole box per axis, |shift| < min(jitter, w/2, h/2))
    box_jitter_form: str = "corners"
    num_points: int = 1  # positive points per training prompt
    # "weighted" (pixel-weighted BCE) | "unweighted_bce" (public-code quirk) | "balanced_bce" (Conv-LoRA on SBU)
    structure_loss: str = "weighted"
    # cosine schedule horizon: "steps" = epochs x steps per epoch (reaches min_lr on the last step);
    # "infosam" = epochs x (N // B + 1), the public code's T_max (one step more per epoch than it takes)
    cosine_horizon: str = "steps"
    grad_clip: Optional[float] = None
    optimizer: str = "adam"  # adam | adamw (decoupled weight decay)
    weight_decay: float = 0.0
    # "cosine": cosine annealing per step to min_lr; "poly": polynomial decay with power 1 (linear) to min_lr,
    # as transformers' get_polynomial_decay_schedule_with_warmup (Conv-LoRA / AutoMM, no warm-up)
    schedule: str = "cosine"
    hflip: bool = False  # random horizontal flip of training samples (p = 0.5, seeded per sample and epoch)
    num_workers: int = 0
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    # "auto" = bf16 autocast on CUDA, fp32 on CPU; "bf16" = bf16 autocast on any device (fast on CPUs
    # with AMX / AVX512-BF16); "fp32" = no autocast. Losses are always computed in float32.
    precision: str = "auto"
    # channels-last (NHWC) convolution weights and input images: faster convolutions with oneDNN on CPUs
    # and with tensor cores on GPUs; numerically the same model (differences at float rounding level)
    channels_last: bool = True
    # torch.compile the encoder blocks and the decoder's transformer (in place: state dicts unchanged);
    # pays a compile time per process, worth it for long GPU runs. compile_backend: a torch.compile backend
    compile: bool = False
    compile_backend: str = "inductor"
    max_steps_per_epoch: Optional[int] = None  # debug: cut every epoch short
    # activation checkpointing of the trainable encoder blocks (recomputed in the backward pass;
    # bench/hardware/memory.py)
    grad_checkpoint: bool = False
    # micro-batches per optimizer step (gradients summed); per-sample losses only: batch-level distillers refuse
    grad_accumulation: int = 1


@dataclass
class EvalConfig:
    prompt: Optional[str] = None  # None = the dataset's protocol ("box" or "points"); "none" = promptless
    num_points: Optional[int] = None  # None = the dataset's protocol
    box_jitter: float = 0.0
    box_jitter_form: str = "corners"  # see train.box_jitter_form; test boxes are jittered only if box_jitter > 0
    batch_size: int = 4
    # which checkpoint is reported: "last" epoch; "val_best" = best on the validation split among the last
    # select_epochs epochs (clean); "test_last" = the last epoch, with each of the last select_epochs epochs
    # also evaluated on the test set and kept in the run, as the public InfoSAM scripts do
    select: str = "val_best"
    select_epochs: int = 5
    patience: Optional[int] = None  # val_best: stop after this many epochs without a better validation score
    # where the metrics are computed: "original" image size, or "input" = the model-input frame (the resized
    # image inside the S x S input, GT resized with nearest neighbour: Conv-LoRA scores its square 1024 frame)
    resolution: str = "original"
    # the first N test images by name keep their predicted mask, GT, image and prompt in <run>/masks/ (for the
    # report's qualitative figure); 0 = none. Does not change a run's results, so it is not in the run hash
    keep_masks: int = 4


@dataclass
class SynthConfig:
    train_size: int = 16
    val_size: int = 8
    test_size: int = 12
    min_side: int = 192
    max_side: int = 288


@dataclass
class FolderDataConfig:
    """The ``folder`` dataset: your own images + masks (or a CSV of ``image,label`` pairs), no code."""

    root: Optional[str] = None  # the dataset folder; paths below are relative to it
    images: str = "images"  # image folder
    masks: str = "masks"  # mask folder; masks pair with images by file stem (+ mask_suffix)
    mask_suffix: str = ""  # e.g. "_mask" when the mask of a.png is a_mask.png
    csv: Optional[str] = None  # instead of images/masks: a CSV with image,label columns (paths relative to it)
    train_list: Optional[str] = None  # optional split files: one sample name (file stem) per line
    val_list: Optional[str] = None
    test_list: Optional[str] = None
    test_fraction: float = 0.2  # without test_list: share of the samples held out as test (fixed order)
    val_fraction: float = 0.0  # without val_list: share of the training pool drawn as validation
    metrics: list[str] = field(default_factory=lambda: ["iou", "dice"])  # keys of bench/eval/metrics.py
    eval_prompt: str = "box"  # box | points
    epochs: int = 10


@dataclass
class DataConfig:
    root: str = "data"
    cache_dir: str = ".cache/samfit"  # generated data and cached encoder states
    encoder_cache: bool = True  # reuse frozen encoder states across epochs, seeds and methods
    cache_dtype: str = "fp16"  # dtype of cached encoder states: fp16 (half the disk) or fp32 (exact)
    # "sam": RGB, SAM's resize -> normalise -> zero-pad, nearest mask resize; "infosam": the public InfoSAM
    # CSVDataset: BGR channels (cv2), resize -> zero-pad the uint8 image -> normalise, bilinear mask resize;
    # "square": Conv-LoRA's resize_to_square (bicubic to S x S, aspect not kept; masks nearest)
    preprocess: str = "sam"
    synth: SynthConfig = field(default_factory=SynthConfig)
    folder: FolderDataConfig = field(default_factory=FolderDataConfig)


@dataclass
class RunConfig:
    """Everything that determines one run's result (hashed into its directory name)."""

    method: str = "adapter"
    dataset: str = "synth_polyp"
    protocol: str = "clean"  # named recipe + evaluation (bench/config/protocols.py): clean | infosam
    seed: int = 0
    variant: str = ""  # label of the sweep grid point (e.g. "distill.alpha=3"); not hashed
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    peft: dict[str, Any] = field(default_factory=dict)
    distill: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class LauncherConfig:
    name: str = "local"  # local | inline | slurm
    max_parallel: int = 1
    runs_per_job: int = 1  # >1 runs several runs in one process (saves ~10 s of imports per run)
    folder: Optional[str] = None  # submitit logs; None = <runs_dir>/_submitit
    timeout_min: int = 240
    threads_per_job: Optional[int] = None  # torch intra-op threads in each job; None = torch's default
    # processes (GPUs) one run trains on with torch DDP: local = torch's elastic launcher, slurm = N tasks per
    # node (bench/train/distributed.py); execution only, not in the run hash
    gpus_per_run: int = 1


@dataclass
class SlurmConfig:
    partition: Optional[str] = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 16
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    setup: list[str] = field(default_factory=list)
    additional: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportConfig:
    # metric definition the table shows: None = the runs' protocol's; "clean" | "infosam" | "convlora" (every
    # run stores all of them, computed from the same logits); shorthand: metrics=clean
    metrics: Optional[str] = None
    # "reported" = each run's reported checkpoint (eval.select); "best_of_last" = the best of the last epochs
    # on the test set, kept by runs with eval.select=test_last (the public InfoSAM scripts allow that choice)
    checkpoint: str = "reported"
    # where report files go: None (or "") = <runs_dir>/_reports; a directory; "-" = print only, write nothing
    # (a read-only runs dir, e.g. a colleague's results)
    out_dir: Optional[str] = None
    # the row every other row is Welch-t-tested against: a row label, or {row label: its reference} for tables
    # whose rows pair up (Table 5: each distiller with and without the relation module); None = zero_shot
    reference: Any = None


@dataclass
class BenchConfig(RunConfig):
    """A sweep: the grid of runs plus how to execute them. Run keys act as defaults for every run."""

    sweep: str = "demo"
    # A method entry is a name, or {name: ..., label: ..., set: {dotted.key: value}} for a table row
    # that is a method with its own overrides (e.g. an ablation row).
    methods: list[Any] = field(default_factory=lambda: ["adapter"])
    datasets: list[str] = field(default_factory=lambda: ["synth_polyp"])
    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)  # dotted key -> values, crossed
    # sweep steps (bench/contracts/sweep_steps.py) called at the end of every run of the sweep, before its report
    after_runs: list[str] = field(default_factory=list)
    runs_dir: str = "runs"
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    # filled by load_config: the dotted keys the sweep file or the command line set; a protocol's per-dataset
    # values (bench/config/protocols.py, e.g. Conv-LoRA's epochs and lr per dataset) never override them
    explicit_keys: list[str] = field(default_factory=list)


RUN_KEYS = tuple(f.name for f in fields(RunConfig))
# Keys that change how a run executes, not what it computes: left out of the run hash.
UNHASHED_KEYS = (
    "variant",
    "train.num_workers",
    "train.log_every",
    "train.device",
    "train.channels_last",
    "train.compile",
    "train.compile_backend",
    "train.grad_checkpoint",
    "train.grad_accumulation",
    "data.cache_dir",
    "data.root",
    "data.encoder_cache",
    "backbone.checkpoints_dir",
    "eval.keep_masks",
)


def merge_checked(base: DictConfig, other: Any, origin: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        raise ConfigError(f"{origin}: {_explain(err, key)}") from None


def _explain(err: OmegaConfBaseException, key: str) -> str:
    msg = str(err).splitlines()[0]
    if "not in struct" in msg or "Key '" in msg and "not" in msg:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.structured(BenchConfig)
        try:
            sub = OmegaConf.select(node, parent) if parent else node
            valid = ", ".join(sorted(sub.keys())) if isinstance(sub, DictConfig) else ""
        except OmegaConfBaseException:
            valid = ""
        return f"unknown key {key!r}" + (f"; valid keys here: {valid}" if valid else "")
    return f"bad value for {key!r}: {msg}" if key else msg


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: ``low <= value <= high`` (``low < value`` when ``above``)."""

    low: Optional[float] = None
    high: Optional[float] = None
    above: bool = False

    def violation(self, value: float) -> Optional[str]:
        if isinstance(value, float) and not math.isfinite(value):
            return "a finite number"
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return f"> {self.low}" if self.above else f">= {self.low}"
        if self.high is not None and value > self.high:
            return f"<= {self.high}"
        return None


# Numeric keys and their ranges (null stays allowed where the schema has Optional); checked before launch.
VALUE_RANGES: dict[str, Range] = {
    "seed": Range(0),
    "seeds": Range(0),
    "backbone.img_size": Range(1),
    "teacher.img_size": Range(1),
    "train.epochs": Range(1),
    "train.batch_size": Range(1),
    "train.lr": Range(0, above=True),
    "train.min_lr": Range(0),
    "train.box_prob": Range(0, 1),
    "train.box_jitter": Range(0),
    "train.num_points": Range(1),
    "train.grad_clip": Range(0, above=True),
    "train.weight_decay": Range(0),
    "train.num_workers": Range(0),
    "train.log_every": Range(1),
    "train.max_steps_per_epoch": Range(1),
    "eval.num_points": Range(1),
    "eval.box_jitter": Range(0),
    "eval.batch_size": Range(1),
    "eval.select_epochs": Range(1),
    "eval.patience": Range(1),
    "backbone.mask_tokens": Range(1),
    "data.synth.train_size": Range(1),
    "data.synth.val_size": Range(0),
    "data.synth.test_size": Range(1),
    "data.synth.min_side": Range(1),
    "data.synth.max_side": Range(1),
    "data.folder.test_fraction": Range(0, 1),
    "data.folder.val_fraction": Range(0, 1),
    "data.folder.epochs": Range(1),
    "launcher.max_parallel": Range(1),
    "launcher.runs_per_job": Range(1),
    "launcher.timeout_min": Range(1),
    "launcher.threads_per_job": Range(1),
    "slurm.gpus_per_node": Range(0),
    "slurm.cpus_per_task": Range(1),
    "slurm.mem_gb": Range(1),
    "slurm.array_parallelism": Range(1),
}
_MISSING = object()


def check_values(cfg: Any) -> None:
    """Every key of :data:`VALUE_RANGES` present in ``cfg`` (a sweep or one run) is a number in its range;
    otherwise one line naming the key, the rule and the value."""
    for dotted, rule in VALUE_RANGES.items():
        value: Any = cfg
        for part in dotted.split("."):
            value = getattr(value, part, _MISSING)
        if value is _MISSING or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ConfigError(f"{dotted} must be a number, got {item!r}")
            need = rule.violation(item)
            if need is not None:
                raise ConfigError(f"{dotted} must be {need}, got {item!r}")


CHOICES: dict[str, tuple[str, ...]] = {
    "train.box_jitter_form": ("corners", "translate"),
    "eval.box_jitter_form": ("corners", "translate"),
    "train.cosine_horizon": ("steps", "infosam"),
    "eval.select": ("last", "val_best", "test_last"),
    "data.cache_dtype": ("fp16", "fp32"),
    "data.preprocess": ("sam", "infosam", "square"),
    "train.optimizer": ("adam", "adamw"),
    "train.prompt": ("mixed", "none"),
    "train.schedule": ("cosine", "poly"),
    "eval.resolution": ("original", "input"),
}
METRIC_DEFINITIONS = ("clean", "infosam", "convlora")  # bench.eval.evaluate.DEFINITIONS


def check_choices(cfg: RunConfig) -> None:
    """Keys with a fixed set of values: an unknown value stops with the key and the valid choices."""
    for dotted, choices in CHOICES.items():
        section, leaf = dotted.split(".")
        value = getattr(getattr(cfg, section), leaf)
        if value not in choices:
            raise ConfigError(f"unknown {dotted} {value!r}; valid: {', '.join(choices)}")
    report = getattr(cfg, "report", None)
    if report is not None:
        if report.metrics is not None and report.metrics not in METRIC_DEFINITIONS:
            raise ConfigError(f"unknown report.metrics {report.metrics!r}; valid: {', '.join(METRIC_DEFINITIONS)}")
        if report.checkpoint not in ("reported", "best_of_last"):
            raise ConfigError(f"unknown report.checkpoint {report.checkpoint!r}; valid: reported, best_of_last")


def method_entry(entry: Any) -> tuple[str, str, dict[str, Any]]:
    """(method name, row label, overrides) of one ``methods`` entry."""
    if isinstance(entry, str):
        return entry, "", {}
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and set(entry) <= {"name", "label", "set"}:
        extra = dict(entry.get("set") or {})
        label = str(entry.get("label") or ",".join(f"{k}={v}" for k, v in extra.items()))
        return entry["name"], label, extra
    raise ConfigError(f"bad methods entry {entry!r}: use a name or {{name: ..., label: ..., set: {{key: value}}}}")


def method_names_of(cfg: "BenchConfig") -> list[str]:
    return [method_entry(e)[0] for e in cfg.methods]


def to_dict(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def config_digest(data: dict[str, Any]) -> str:
    """10 hex digits of the SHA-256 of a run's config dict without :data:`UNHASHED_KEYS` (modified in place)."""
    for dotted in UNHASHED_KEYS:
        parent, _, leaf = dotted.rpartition(".")
        node = data
        for part in parent.split(".") if parent else []:
            node = node[part]
        node.pop(leaf, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def row_label(run: RunConfig) -> str:
    """How a run's method appears in tables: the method name, plus its grid point if any."""
    return f"{run.method} [{run.variant}]" if run.variant else run.method


def grid_points(cfg: "BenchConfig") -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in cfg.grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def run_from_dict(data: dict[str, Any]) -> RunConfig:
    obj = OmegaConf.to_object(merge_checked(OmegaConf.structured(RunConfig), data, "run config"))
    assert isinstance(obj, RunConfig)
    return obj


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
