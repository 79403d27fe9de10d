"""Tasks beyond one binary mask: what the decoder predicts, how it is trained and how it is scored.

A binary dataset (every table of the InfoSAM and Conv-LoRA binary comparisons) needs nothing from here: the
trainer and the evaluation run their own one-mask path, bit for bit as before. A ``semantic`` dataset (a label
map per image) or an ``instances`` dataset (COCO-style objects, one prompt each) gets a :class:`Task`
(:func:`build_task`), which the trainer and the evaluation ask for

* the student's decoder head (:meth:`Task.prepare_student` before the PEFT method is applied: the number of
  mask tokens; :meth:`Task.attach_head` after: the trainable class head, kept as ``student.task_head``),
* the items of a split (:meth:`Task.dataset`) and the loss terms of a batch (:meth:`Task.loss_terms`), with the
  student's and teacher's :class:`~bench.contracts.distill.Features` so that distillers work unchanged,
* the scores of a split (:meth:`Task.evaluate`) under every definition it has.

PEFT methods adapt the encoder and never learn which task they serve.
"""

from bench.tasks.base import Task, TaskError, build_task, register_task, task_names

__all__ = ["Task", "TaskError", "build_task", "register_task", "task_names"]
