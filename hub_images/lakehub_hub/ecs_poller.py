"""One DescribeTasks poller per hub process: the hub's spawners share their ECS calls.

JupyterHub calls each running server's ``Spawner.poll()`` every ``poll_interval`` (30 s), and
the Fargate spawner's start and stop loops ask for their task every ``describe_interval``
(2 s). With one DescribeTasks per question, a hub with 500 running servers would call ECS about
17 times a second for nothing but "is it still running?". DescribeTasks takes up to 100 tasks,
so the hub's spawners ask this poller instead:

- a question that arrives within ``window`` seconds of another joins it: one flush sends one
  DescribeTasks per 100 task ARNs and hands each spawner its own task (or None when ECS no
  longer knows it); a poll about a task the running flush is asking about waits for that answer;
- every task that was asked about is remembered (for ``3 x max_age``, at least a minute); a flush
  also refreshes the remembered tasks whose answer is older than half the oldest age a poll
  accepts, and fills its last request up to 100 tasks with the next oldest, at no extra call;
- ``poll()`` accepts an answer up to ``max_age`` old (its ``poll_interval``): together, the hub
  sends about ceil(running servers / 100) DescribeTasks per poll interval, not one per server.
  Start and stop loops accept only an answer asked for after they asked (``max_age=0``).

Authorization: the hub role may describe only its tier's tasks. When ECS refuses a batch (or
finds an ARN malformed), each task of it is described alone, every spawner gets the answer or
the error its own call would have had, and a refused task is described alone from then on.
Any other error (throttling, network) goes to every spawner of the batch and nothing is cached.

The poller belongs to one asyncio event loop (JupyterHub has one); each loop has its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

MAX_TASKS_PER_CALL = 100  # DescribeTasks `tasks`: up to 100 IDs or ARNs
DEFAULT_WINDOW = 0.25
MIN_FORGET_AFTER = 60.0
# Errors of a batch that one task can cause: describe each task alone.
PER_TASK_ERRORS = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidParameterException")

_registry: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _is_final(task: dict | None) -> bool:
    return task is None or task.get("lastStatus") == "STOPPED"


class TaskPoller:
    """Coalesces DescribeTasks for one ECS client and cluster within one event loop."""

    def __init__(self, ecs, cluster: str, window: float = DEFAULT_WINDOW, log: logging.Logger | None = None):
        self.ecs = ecs
        self.cluster = cluster
        self.window = window
        self.log = log or logging.getLogger("lakehub_hub.ecs_poller")
        self.cache: dict[str, tuple[float, dict | None, bool]] = {}  # arn -> (when asked, task or None, with tags)
        self.asked: dict[str, float] = {}  # remembered tasks -> when last asked about
        self.pending: dict[str, list[asyncio.Future]] = {}
        self.pending_tags = False  # a question of the next flush wants the tasks' tags
        self.solo: set[str] = set()  # refused in a batch: described alone
        self.longest_max_age = 0.0
        self.calls = 0  # DescribeTasks requests sent (figures, tests)
        self._timer: asyncio.TimerHandle | None = None
        self._lock: asyncio.Lock | None = None
        self._flushes: set[asyncio.Task] = set()
        self._current: dict[str, list[asyncio.Future]] = {}  # the running flush's questions
        self._current_arns: set[str] = set()  # tasks of the running flush not answered yet

    # -- the one per loop ------------------------------------------------------------------
    @classmethod
    def shared(cls, ecs, cluster: str, window: float = DEFAULT_WINDOW, log=None) -> "TaskPoller":
        loop = asyncio.get_running_loop()
        with _registry_lock:
            pollers = _registry.setdefault(loop, {})
            key = (id(ecs), cluster)
            poller = pollers.get(key)
            if poller is None or poller.ecs is not ecs:
                poller = pollers[key] = cls(ecs, cluster, window, log)
            return poller

    # -- asking ----------------------------------------------------------------------------
    async def describe(self, arn: str, max_age: float = 0.0, include_tags: bool = False) -> dict | None:
        """The task as ECS describes it (with its tags when asked: the flush then asks for every
        task's), None when ECS does not know it. With max_age > 0, an answer to a request sent at
        most max_age seconds ago will do."""
        now = time.monotonic()
        self.asked[arn] = now
        if max_age > 0:
            self.longest_max_age = max(self.longest_max_age, max_age)
            entry = self.cache.get(arn)
            if entry is not None and now - entry[0] <= max_age and (entry[2] or not include_tags):
                return entry[1]
            if arn in self._current_arns and not include_tags:  # being asked right now: that answer will do
                future = asyncio.get_running_loop().create_future()
                self._current.setdefault(arn, []).append(future)
                return await future
        future = asyncio.get_running_loop().create_future()
        self.pending.setdefault(arn, []).append(future)
        self.pending_tags = self.pending_tags or include_tags
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._start_flush)
        return await future

    def forget(self, arn: str) -> None:
        """The spawner no longer owns the task (stopped and cleared)."""
        self.asked.pop(arn, None)
        self.cache.pop(arn, None)
        self.solo.discard(arn)

    # -- flushing ----------------------------------------------------------------------------
    def _start_flush(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    def _plan(self, wanted: list[str], now: float) -> tuple[list[str], list[str]]:
        """(ARNs for batches, ARNs to describe alone) for one flush."""
        forget_after = max(MIN_FORGET_AFTER, 3 * self.longest_max_age)
        for arn, when in list(self.asked.items()):
            if now - when > forget_after and arn not in self.pending:
                self.forget(arn)
        batch = [a for a in wanted if a not in self.solo]
        alone = [a for a in wanted if a in self.solo]
        chosen = set(wanted)

        def age(arn: str) -> float:
            entry = self.cache.get(arn)
            return now - entry[0] if entry else float("inf")

        others = sorted(
            (
                a
                for a in self.asked
                if a not in chosen and a not in self.solo and not _is_final(self.cache[a][1] if a in self.cache else {})
            ),
            key=age,
            reverse=True,
        )
        stale_after = self.longest_max_age / 2
        stale = [a for a in others if self.longest_max_age and age(a) > stale_after]
        batch += stale
        room = (-len(batch)) % MAX_TASKS_PER_CALL
        batch += [a for a in others[len(stale) : len(stale) + room]]
        return batch, alone

    async def _flush(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one flush at a time; questions meanwhile wait for the next
            waiting, self.pending = self.pending, {}
            with_tags, self.pending_tags = self.pending_tags, False
            try:
                batch, alone = self._plan(list(waiting), time.monotonic())
                chunks = [batch[i : i + MAX_TASKS_PER_CALL] for i in range(0, len(batch), MAX_TASKS_PER_CALL)]
                chunks += [[arn] for arn in alone]
                self._current, self._current_arns = waiting, set(batch) | set(alone)
                for chunk in chunks:
                    answers = await asyncio.to_thread(self._describe_chunk, chunk, with_tags)
                    self._current_arns.difference_update(answers)
                    for arn, (ok, value) in answers.items():
                        for future in waiting.pop(arn, []):
                            if future.done():
                                continue
                            if ok:
                                future.set_result(value)
                            else:
                                future.set_exception(value)
            except BaseException as exc:  # noqa: BLE001 - no spawner may wait forever
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
            finally:
                self._current, self._current_arns = {}, set()
                for futures in waiting.values():  # not in any chunk (cannot happen): do not hang
                    for future in futures:
                        if not future.done():
                            future.set_exception(RuntimeError("the task was not described"))

    # -- the calls (in a thread) ---------------------------------------------------------------
    def _call(self, arns: list[str], with_tags: bool) -> dict:
        self.calls += 1
        if with_tags:
            return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns, include=["TAGS"])
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)

    def _describe_chunk(self, arns: list[str], with_tags: bool = False) -> dict[str, tuple[bool, Any]]:
        sent = time.monotonic()
        try:
            response = self._call(arns, with_tags)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if len(arns) > 1 and code in PER_TASK_ERRORS:
                self.log.info("DescribeTasks of %d tasks refused (%s); describing each alone", len(arns), code)
                answers = {}
                for arn in arns:
                    answer = self._describe_chunk([arn], with_tags)
                    if not answer[arn][0]:
                        self.solo.add(arn)
                    answers.update(answer)
                return answers
            return {arn: (False, exc) for arn in arns}
        except BotoCoreError as exc:
            return {arn: (False, exc) for arn in arns}
        found: dict[str, dict] = {}
        for task in response.get("tasks") or []:
            found[task["taskArn"]] = task
            found[task["taskArn"].rsplit("/", 1)[-1]] = task
        answers = {}
        for arn in arns:
            task = found.get(arn) or found.get(arn.rsplit("/", 1)[-1])
            if arn in self.asked:
                self.cache[arn] = (sent, task, with_tags)
            answers[arn] = (True, task)
        return answers
