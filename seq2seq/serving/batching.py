"""Dynamic batching: requests for one model that arrive together are decoded as one batch.

Each model has one ``DynamicBatcher``. A request submits its items (lines, images) under a key
(its decoding settings: only requests that decode the same way can share a batch). The first
request of a batch waits while others keep arriving: until none has come for ``quiet_s``, at
most ``max_wait_s`` in all, or until ``max_items`` items. Then every waiting request with the
same key is decoded together on the model's own worker thread, so that the event loop stays
free and one model never runs two batches at once. Waiting for a quiet moment, rather than a
fixed time, keeps batches whole when many clients send their next request at once (as they do
when one batch answers them all) without delaying a lone request by more than ``quiet_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

#: Decodes the items of several requests together: (key, items) -> one result per item.
DecodeBatch = Callable[[Any, list[Any]], list[Any]]


@dataclass
class _Job:
    key: Hashable
    items: list[Any]
    future: asyncio.Future[list[Any]] = field(repr=False)


class DynamicBatcher:
    """Collects requests until a quiet moment (or ``max_items`` items) and decodes them together."""

    def __init__(
        self, decode: DecodeBatch, max_items: int, quiet_s: float, max_wait_s: float, name: str = "model"
    ) -> None:
        self.decode = decode
        self.max_items = max_items
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{name}")
        self.batches = 0  # decoded so far, for the logs and tests
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """The results of ``items``, decoded with whatever else arrives with the same key."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(key, list(items), future))
        return await future

    async def run_alone(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the model's worker thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            jobs = await self._gather(await self._queue.get())
            for key in dict.fromkeys(job.key for job in jobs):  # keys in order of arrival
                for chunk in _chunks([job for job in jobs if job.key == key], self.max_items):
                    await self._decode(key, chunk)

    async def _gather(self, first: _Job) -> list[_Job]:
        """``first`` and the jobs that arrive before a quiet moment, up to ``max_items`` items."""
        assert self._queue is not None
        jobs, loop = [first], asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while sum(len(job.items) for job in jobs) < self.max_items:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            remaining = min(self.quiet_s, deadline - loop.time())
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _decode(self, key: Hashable, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # a caller that timed out is gone
        if not jobs:
            return
        items = [item for job in jobs for item in job.items]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.decode, key, items)
        except Exception as error:  # every caller of the batch gets the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        self.batches += 1
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)


def _chunks(jobs: list[_Job], max_items: int) -> list[list[_Job]]:
    """Consecutive groups of whole jobs of at most ``max_items`` items (a larger job stands alone)."""
    chunks: list[list[_Job]] = []
    size = 0
    for job in jobs:
        if chunks and size + len(job.items) <= max_items:
            chunks[-1].append(job)
            size += len(job.items)
        else:
            chunks.append([job])
            size = len(job.items)
    return chunks
