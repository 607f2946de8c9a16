"""What the launcher does when a task exits: pure decision logic.

MultiWorkerMirroredStrategy needs every task: any failure fails the job, and
a restart brings back all tasks. Under ParameterServerStrategy the chief's
exit ends the job; a worker may die and training goes on (it is restarted
alone if restarts are left) until no worker is left; a lost ps fails the job.
A task that exits with status 2 reported a user error: restarting cannot help.
A task that exits with status 75 was preempted and saved its state: the job
starts again, without using a restart. One budget of restarts covers the whole
job, single-task restarts included. With a minimum number of workers (`--min_workers`), a
MultiWorkerMirrored job whose restarts are used up goes on without the worker that failed.
"""

from __future__ import annotations

import enum
from typing import Optional

from tfdist.cluster import (CHIEF, EVALUATOR, EXIT_PREEMPTED, EXIT_USER_ERROR, WORKER, ClusterSpec,
                            TaskId)


class Action(enum.Enum):
  WAIT = "wait"                  # nothing to do; the job goes on
  JOB_DONE = "job_done"          # training finished: stop what still runs (servers), exit 0
  FAIL_JOB = "fail_job"          # stop every task; restart the job if restarts are left
  STOP_JOB = "stop_job"          # stop every task and fail: a restart would fail the same way
  RESTART_TASK = "restart_task"  # start this one task again (a PSS worker)
  PREEMPTED = "preempted"        # let the others finish saving, then start the job again (free)


def completion_tasks(spec: ClusterSpec) -> set[TaskId]:
  """The tasks whose success is the job's success."""
  if spec.num_ps:
    return {TaskId(CHIEF, 0)}
  return {t for t in spec.tasks() if t.type != EVALUATOR}


def on_exit(spec: ClusterSpec, task: TaskId, code: int, succeeded: set[TaskId],
            lost_workers: set[TaskId], restarts_left: int) -> Action:
  """Decides what a task's exit with `code` means.

  Args:
    succeeded: tasks that already exited 0.
    lost_workers: parameter-server workers that failed earlier and are not running.
    restarts_left: what is left of the job's one restart budget.
  """
  if task.type == EVALUATOR:
    return Action.WAIT  # A sidecar: its end, good or bad, never decides the training job.
  if code == EXIT_USER_ERROR:
    return Action.STOP_JOB
  if code == EXIT_PREEMPTED and not spec.num_ps:
    return Action.PREEMPTED
  if code != 0:
    if spec.num_ps and task.type == WORKER:
      if restarts_left > 0:
        return Action.RESTART_TASK
      workers = {t for t in spec.tasks() if t.type == WORKER}
      return Action.FAIL_JOB if workers <= lost_workers | {task} else Action.WAIT
    return Action.FAIL_JOB
  done = succeeded | {task}
  if completion_tasks(spec) <= done:
    return Action.JOB_DONE
  # A PSS server ends by itself (status 0) only once the chief recorded the run finished.
  return Action.WAIT


def worker_to_leave_out(spec: ClusterSpec, failed: Optional[TaskId],
                        min_workers: int) -> Optional[TaskId]:
  """The worker a MultiWorkerMirrored job restarts without when its restarts are used up
  and `failed` ended the attempt: `failed`, if it is a `worker` task (a `chief` task is
  never left out; without one, worker 1 becomes worker 0, the chief) and at least
  `min_workers` (> 0) compute workers remain without it; else None.
  """
  if not min_workers or spec.num_ps or failed is None or failed.type != WORKER:
    return None
  return failed if spec.num_compute_workers - 1 >= min_workers else None
