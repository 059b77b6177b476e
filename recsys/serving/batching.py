"""Coalescing concurrent requests of one worker into one model call (pure asyncio).

Under load, a BentoML worker holds many ``recommend`` requests at once. Answered one by one,
each pays the fixed cost of an ANN search and the numpy bookkeeping around it; answered
together, they share one faiss search over a [B, d] query matrix and one pass of Python.
``MicroBatcher`` does this without a timer: a request waits only for the current turn of the
event loop, so a lone request is answered at once and batches grow with the load::

    batcher = MicroBatcher(lambda key, users: engine.recommend_many(users, *key))
    ranked = await batcher.submit((10, True, None), user_id)

Requests are grouped by ``key`` (the request's options): only requests whose answers come
from the same call are batched, so every answer equals the unbatched one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[K, T, R]):
    """``await submit(key, item)`` returns ``fn(key, items)[i]``, where ``items`` are the
    items submitted with the same ``key`` during one event-loop turn (arrival order, at most
    ``max_batch`` per call). An exception raised by ``fn`` is raised to every caller of that
    batch; a caller that went away (cancelled) is left out of the next call."""

    def __init__(self, fn: Callable[[K, list[T]], Sequence[R]], *, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._fn = fn
        self.max_batch = max_batch
        self._pending: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._scheduled = False
        self.on_batch: Callable[[int], None] | None = None
        """Called with each batch's size (the service feeds a Prometheus histogram)."""

    async def submit(self, key: K, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.setdefault(key, []).append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for key, entries in pending.items():
            live = [(item, fut) for item, fut in entries if not fut.done()]
            for lo in range(0, len(live), self.max_batch):
                self._run(key, live[lo : lo + self.max_batch])

    def _run(self, key: K, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = self._fn(key, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} for {len(batch)}")
        except Exception as exc:  # every waiter gets the error: it is theirs too
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
