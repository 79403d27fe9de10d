"""Typed configuration: dataclass defaults ← sweep YAML ← ``key=value`` overrides.

The schema below is the single source of defaults and of the fixed value rules: a numeric key's allowed
range (``field(metadata={"range": Range(...)})``, written :func:`ranged`) and a key's fixed choices
(``field(metadata={"choices": (...)})``, written :func:`choice`), which :func:`bench.config.checks.check_values`
enforces on a sweep and on every run. OmegaConf merges YAML and command-line overrides onto the schema, so an
unknown key or a wrong type fails at once with the key's name. Keys whose valid values are registered names
(methods, datasets, backbones, protocols and what a protocol names) are checked against their registries.
Method- and dataset-specific options live in free-form ``peft``/``distill`` dicts that the registered method
validates against its own options dataclass.

Field order and defaults are part of every run's YAML dump and hash: change them only on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional


class ConfigError(ValueError):
    """A configuration mistake a user can fix; the message names the key and the valid choices."""


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: ``low <= value <= high`` (``low < value`` when ``above``)."""

    low: Optional[float] = None
    high: Optional[float] = None
    above: bool = False

    def violation(self, value: float) -> Optional[str]:
        """The rule ``value`` breaks (``">= 1"``, ``"a finite number"`` ...), or None when it is allowed."""
        if isinstance(value, float) and not math.isfinite(value):
            return "a finite number"
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return f"> {self.low}" if self.above else f">= {self.low}"
        if self.high is not None and value > self.high:
            return f"<= {self.high}"
        return None


def ranged(default: Any, low: Optional[float] = None, high: Optional[float] = None, above: bool = False) -> Any:
    """A numeric field whose values must lie in ``Range(low, high, above)`` (null passes where Optional)."""
    return field(default=default, metadata={"range": Range(low, high, above)})


def choice(default: Optional[str], choices: tuple[str, ...]) -> Any:
    """A string field whose value must be one of ``choices`` (null passes where Optional)."""
    return field(default=default, metadata={"choices": choices})


@dataclass
class BackboneConfig:
    name: str = "litemedsam"
    checkpoint: Optional[str] = None  # path; None = bundled weights (litemedsam) or random init
    img_size: Optional[int] = ranged(None, 1)  # None = the backbone's native input size
    # a full-size backbone without a checkpoint is refused unless random weights are asked for (tests, timing)
    random_init: bool = False
    checkpoints_dir: str = "checkpoints"  # where `download` puts official checkpoints and backbones find them
    # keep only the first n of the decoder's mask tokens (and their hypernetwork MLPs); None = all (SAM: 4).
    # 1 = Conv-LoRA's num_mask_tokens=1: the two-way transformer then sees the IoU token and one mask token
    mask_tokens: Optional[int] = ranged(None, 1)


@dataclass
class TeacherConfig:
    backbone: Optional[str] = None  # None = same as the student's backbone
    checkpoint: Optional[str] = None
    img_size: Optional[int] = ranged(None, 1)


@dataclass
class TrainConfig:
    epochs: Optional[int] = ranged(None, 1)  # None = the dataset's protocol (10; 20 for Massachusetts Roads)
    batch_size: int = ranged(4, 1)
    lr: float = ranged(2e-4, 0, above=True)
    min_lr: float = ranged(2e-5, 0)
    # "mixed": GT boxes or GT points per batch (box_prob); "none": promptless (Conv-LoRA)
    prompt: str = choice("mixed", ("mixed", "none"))
    box_prob: float = ranged(0.5, 0, 1)  # share of batches prompted by a noisy GT box; the rest by GT points
    box_jitter: float = ranged(5.0, 0)  # max box noise in pixels at a 1024-px input, scaled to img_size
    # "corners": independent uniform noise on each coordinate; "translate": the public InfoSAM code's
    # get_single_box_from_mask (one integer shift of the whole box per axis, |shift| < min(jitter, w/2, h/2))
    box_jitter_form: str = choice("corners", ("corners", "translate"))
    num_points: int = ranged(1, 1)  # positive points per training prompt
    # "weighted" (pixel-weighted BCE) | "unweighted_bce" (public-code quirk) | "balanced_bce" (Conv-LoRA on SBU)
    structure_loss: str = "weighted"
    # cosine schedule horizon: "steps" = epochs x steps per epoch (reaches min_lr on the last step);
    # "infosam" = epochs x (N // B + 1), the public code's T_max (one step more per epoch than it takes)
    cosine_horizon: str = choice("steps", ("steps", "infosam"))
    grad_clip: Optional[float] = ranged(None, 0, above=True)
    optimizer: str = choice("adam", ("adam", "adamw"))  # adamw: decoupled weight decay
    weight_decay: float = ranged(0.0, 0)
    # "all": every trained parameter decays; "automm": AutoMM's two groups (get_weight_decay_param_names):
    # parameters of LayerNorm / BatchNorm / GroupNorm modules and every name with "bias" get no weight decay
    weight_decay_groups: str = choice("all", ("all", "automm"))
    # "cosine": cosine annealing per step to min_lr; "poly": polynomial decay with power 1 (linear) to min_lr,
    # as transformers' get_polynomial_decay_schedule_with_warmup (Conv-LoRA / AutoMM, no warm-up)
    schedule: str = choice("cosine", ("cosine", "poly"))
    hflip: bool = False  # random horizontal flip of training samples (p = 0.5, seeded per sample and epoch)
    num_workers: int = ranged(0, 0)
    log_every: int = ranged(10, 1)
    # TensorBoard event files in <run>/tb/ (losses, lr, scored epochs, final metrics, kept masks;
    # bench/runs/tboard.py); never changes a result, so it is not part of the run hash
    tensorboard: bool = True
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
    max_steps_per_epoch: Optional[int] = ranged(None, 1)  # debug: cut every epoch short
    # activation checkpointing of the trainable encoder blocks (recomputed in the backward pass;
    # bench/hardware/memory.py)
    grad_checkpoint: bool = False
    # micro-batches per optimizer step (gradients summed); per-sample losses only: batch-level distillers refuse
    grad_accumulation: int = 1


@dataclass
class EvalConfig:
    # None = the dataset's protocol ("box" or "points"); "none" = promptless
    prompt: Optional[str] = choice(None, ("box", "points", "none"))
    num_points: Optional[int] = ranged(None, 1)  # None = the dataset's protocol
    box_jitter: float = ranged(0.0, 0)
    # see train.box_jitter_form; test boxes are jittered only if box_jitter > 0
    box_jitter_form: str = choice("corners", ("corners", "translate"))
    batch_size: int = ranged(4, 1)
    # which checkpoint is reported: "last" epoch; "val_best" = best on the validation split among the last
    # select_epochs epochs (clean); "test_last" = the last epoch, with each of the last select_epochs epochs
    # also evaluated on the test set and kept in the run, as the public InfoSAM scripts do
    select: str = choice("val_best", ("last", "val_best", "test_last"))
    select_epochs: int = ranged(5, 1)
    # val_best: stop after this many epochs without a better validation score
    patience: Optional[int] = ranged(None, 1)
    # where the metrics are computed: "original" image size, or "input" = the model-input frame (the resized
    # image inside the S x S input, GT resized with nearest neighbour: Conv-LoRA scores its square 1024 frame)
    resolution: str = choice("original", ("original", "input"))
    # the first N test images by name keep their predicted mask, GT, image and prompt in <run>/masks/ (for the
    # report's qualitative figure); 0 = none. Does not change a run's results, so it is not in the run hash
    keep_masks: int = 4
    # more test sets (dataset names) this run is scored on after training, with the reported checkpoint and the
    # run's data.* settings: one training behind several test columns (Conv-LoRA's polyp model on Kvasir and
    # on CVC-612); usually set by the sweep's test_sets, each recorded under metrics.json "also_tested"
    also_test: list[str] = field(default_factory=list)


@dataclass
class SynthConfig:
    train_size: int = ranged(16, 1)
    val_size: int = ranged(8, 0)
    test_size: int = ranged(12, 1)
    min_side: int = ranged(192, 1)
    max_side: int = ranged(288, 1)


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
    # without test_list: share of the samples held out as test (fixed order)
    test_fraction: float = ranged(0.2, 0, 1)
    val_fraction: float = ranged(0.0, 0, 1)  # without val_list: share of the training pool drawn as validation
    metrics: list[str] = field(default_factory=lambda: ["iou", "dice"])  # keys of bench/eval/metrics.py
    eval_prompt: str = choice("box", ("box", "points"))
    epochs: int = ranged(10, 1)
    # a classes file (one class name a line, line i = class i, relative to root): masks are then label maps
    # (PNG pixel values = class indices, ignore_index = unlabelled) and the task is semantic segmentation
    classes: Optional[str] = None
    ignore_index: int = ranged(255, 0, 255)


@dataclass
class CocoDataConfig:
    """The ``coco`` dataset: COCO-style instance annotations (polygons or RLE), one prompt per object."""

    root: Optional[str] = None  # the dataset folder; paths below are relative to it
    images: str = "images"  # image folder (file_name of each COCO image is relative to it)
    train: str = "annotations/train.json"
    val: Optional[str] = None
    test: str = "annotations/test.json"
    eval_prompt: str = choice("box", ("box", "points"))
    epochs: int = ranged(10, 1)


@dataclass
class DataConfig:
    root: str = "data"
    cache_dir: str = ".cache/samfit"  # generated data and cached encoder states
    encoder_cache: bool = True  # reuse frozen encoder states across epochs, seeds and methods
    # dtype of cached encoder states: fp16 (half the disk) or fp32 (exact)
    cache_dtype: str = choice("fp16", ("fp16", "fp32"))
    # "sam": RGB, SAM's resize -> normalise -> zero-pad, nearest mask resize; "infosam": the public InfoSAM
    # CSVDataset: BGR channels (cv2), resize -> zero-pad the uint8 image -> normalise, bilinear mask resize;
    # "square": Conv-LoRA's resize_to_square (bicubic to S x S, aspect not kept; masks nearest)
    preprocess: str = choice("sam", ("sam", "infosam", "square"))
    # a real or folder dataset without validation files holds back a validation split from its training pool
    # (what eval.select=val_best reads); false = every training image trains and val is empty (protocol infosam)
    hold_out_val: bool = True
    synth: SynthConfig = field(default_factory=SynthConfig)
    folder: FolderDataConfig = field(default_factory=FolderDataConfig)
    coco: CocoDataConfig = field(default_factory=CocoDataConfig)


@dataclass
class TaskConfig:
    """How a multi-class task is predicted (a binary dataset ignores this section).

    ``head``: ``"queries"`` = AutoMM's ``SAMForSemanticSegmentation`` (``queries`` mask tokens, a class head on
    them, Mask2Former's matching loss, the Mask2Former semantic inference); ``"per_class"`` = SAMed's multi-class
    SAM (one mask token per class, softmax cross-entropy + Dice, argmax); ``"auto"`` = the protocol's choice.
    """

    head: str = choice("auto", ("auto", "queries", "per_class"))
    queries: Optional[int] = ranged(None, 1)  # mask tokens of the queries head; None = the protocol's
    # "auto" = the head's own loss; "m2f_sum": the three Mask2Former terms summed unweighted (AutoMM, its
    # configured 10/5/5 weights never reach Mask2FormerLoss.forward); "m2f_weighted": weighted 10/5/5
    loss: str = choice("auto", ("auto", "m2f_sum", "m2f_weighted", "ce_dice"))


@dataclass
class RunConfig:
    """Everything that determines one run's result (hashed into its directory name)."""

    method: str = "adapter"
    dataset: str = "synth_polyp"
    protocol: str = "clean"  # named recipe + evaluation: one file each in protocols/ (`list` shows them)
    seed: int = ranged(0, 0)
    variant: str = ""  # label of the sweep grid point (e.g. "distill.alpha=3"); not hashed
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    peft: dict[str, Any] = field(default_factory=dict)
    distill: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)


@dataclass
class LauncherConfig:
    name: str = choice("local", ("local", "inline", "slurm"))
    max_parallel: int = ranged(1, 1)
    runs_per_job: int = ranged(1, 1)  # >1 runs several runs in one process (saves ~10 s of imports per run)
    folder: Optional[str] = None  # submitit logs; None = <runs_dir>/_submitit
    timeout_min: int = ranged(240, 1)
    threads_per_job: Optional[int] = ranged(None, 1)  # torch intra-op threads in each job; None = torch's default
    # processes (GPUs) one run trains on with torch DDP: local = torch's elastic launcher, slurm = N tasks per
    # node (bench/train/distributed.py); execution only, not in the run hash
    gpus_per_run: int = ranged(1, 1)


@dataclass
class SlurmConfig:
    partition: Optional[str] = None
    gpus_per_node: int = ranged(1, 0)
    cpus_per_task: int = ranged(8, 1)
    mem_gb: int = ranged(32, 1)
    array_parallelism: int = ranged(16, 1)
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    setup: list[str] = field(default_factory=list)
    additional: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportConfig:
    # metric definition the table shows: None = the runs' protocol's; "clean" | "infosam" | "convlora" (every
    # run stores all of them, computed from the same logits); shorthand: metrics=clean. A protocol file that
    # brings a definition of its own (Protocol.score) adds its name to these choices
    metrics: Optional[str] = choice(None, ("clean", "infosam", "convlora"))
    # "reported" = each run's reported checkpoint (eval.select); "best_of_last" = the best of the last epochs
    # on the test set, kept by runs with eval.select=test_last (the public InfoSAM scripts allow that choice)
    checkpoint: str = choice("reported", ("reported", "best_of_last"))
    # where report files go: None (or "") = <runs_dir>/_reports; a directory; "-" = print only, write nothing
    # (a read-only runs dir, e.g. a colleague's results)
    out_dir: Optional[str] = None
    # the row every other row is Welch-t-tested against: a row label, or {row label: its reference} for tables
    # whose rows pair up (Table 5: each distiller with and without the relation module); None = zero_shot
    reference: Any = None
    # the report files' name (<name>.md, <name>_qualitative.png, ...): None = the sweep's name for the sweep
    # file's own runs, <sweep>-<digest of the run list> when overrides change the runs (reports/names.py)
    name: Optional[str] = None


@dataclass
class BenchConfig(RunConfig):
    """A sweep: the grid of runs plus how to execute them. Run keys act as defaults for every run."""

    sweep: str = "demo"
    # A method entry is a name, or {name: ..., label: ..., set: {dotted.key: value}} for a table row
    # that is a method with its own overrides (e.g. an ablation row).
    methods: list[Any] = field(default_factory=lambda: ["adapter"])
    datasets: list[str] = field(default_factory=lambda: ["synth_polyp"])
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"range": Range(0)})
    grid: dict[str, list[Any]] = field(default_factory=dict)  # dotted key -> values, crossed
    # dataset -> more test sets its runs are scored on (eval.also_test): where both are in `datasets`, the test set
    # gets no training of its own and its report column comes from the host's runs (protocol convlora:
    # {kvasir: [cvc_clinicdb]}, one polyp training as the public code); test_sets.kvasir=[] trains both
    test_sets: dict[str, list[str]] = field(default_factory=dict)
    # sweep steps (bench/contracts/sweep_steps.py) the launcher calls once per `run` of the sweep, on rank 0: after
    # the launched runs end (local, inline), before its report; under Slurm before submitting (the command does not
    # wait for the jobs), so the steps see a job's results at the next `run` after it ended. `report` never calls them
    after_runs: list[str] = field(default_factory=list)
    runs_dir: str = "runs"
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    # filled by load_config: the dotted keys the sweep file or the command line set; a protocol's per-dataset
    # values (protocols/, e.g. Conv-LoRA's epochs and lr per dataset) never override them
    explicit_keys: list[str] = field(default_factory=list)


RUN_KEYS = tuple(f.name for f in fields(RunConfig))
