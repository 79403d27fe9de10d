"""Configuration: the typed schema (:mod:`bench.config.schema`), its value checks, the override grammar
(:mod:`bench.config.overrides`) and the named protocols' config layers (:mod:`bench.config.protocols`).

Owns what a run *is* before anything is built: dataclass defaults, ranges and choices, run digests and YAML.
Imports only the standard library, OmegaConf/PyYAML and the foundation modules of ``bench/`` (registry,
discovery, fileio, logs). The schema's public names (``from bench.config import RunConfig, BenchConfig,
ConfigError``) are re-exported here.
"""

from bench.config.schema import *  # noqa: F401,F403
