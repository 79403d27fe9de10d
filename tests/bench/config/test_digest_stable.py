"""Stored runs keep their names: keys added for the multi-class tasks enter a run's hash only when set."""

from bench.config import RunConfig, TaskConfig, config_digest, to_dict

# digests of these configs before the task/coco/label-map keys existed (computed at commit b973074)
BEFORE = {
    (): "ab1a0b8139",
    (("method", "lora"), ("dataset", "synth_leaf"), ("seed", 3)): "0d390ec0b4",
    (("protocol", "convlora"),): "a365f56649",
}


def test_binary_run_digests_unchanged_by_the_task_keys() -> None:
    for kwargs, digest in BEFORE.items():
        assert config_digest(to_dict(RunConfig(**dict(kwargs)))) == digest


def test_a_set_task_key_changes_the_digest() -> None:
    base = config_digest(to_dict(RunConfig()))
    assert config_digest(to_dict(RunConfig(task=TaskConfig(head="per_class")))) != base
    run = RunConfig()
    run.data.folder.classes = "classes.txt"
    assert config_digest(to_dict(run)) != base
