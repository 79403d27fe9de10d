"""The real datasets' file checks (``prepare``, ``list``, the launcher's and ``download``'s looks), registered
with the core (:func:`bench.contracts.dataset.register_dataset_tools`): ``bench/`` reaches them through that
registry, never by importing this package. The checks themselves live in :mod:`datasets._prepare`."""

from __future__ import annotations

from bench.contracts.dataset import DatasetTools, register_dataset_tools
from datasets._prepare import check_copy, dataset_status, prepare_command, real_spec

register_dataset_tools(
    DatasetTools(
        dataset_status=dataset_status,
        prepare_command=prepare_command,
        real_spec=real_spec,
        check_copy=check_copy,
    )
)
