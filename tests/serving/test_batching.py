"""MicroBatcher: concurrent calls with the same key share one call, in arrival order; errors
reach every waiter of their batch and no other; a lone call is answered on the next loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from recsys.serving.batching import MicroBatcher


class Recorder:
    """fn(key, items) -> [(key, item * 10)], remembering each call."""

    def __init__(self, fail_on: object = None) -> None:
        self.calls: list[tuple[Any, list[int]]] = []
        self.fail_on = fail_on

    def __call__(self, key: Any, items: list[int]) -> list[tuple[Any, int]]:
        self.calls.append((key, list(items)))
        if key == self.fail_on:
            raise ValueError(f"bad key {key}")
        return [(key, i * 10) for i in items]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_calls_share_one_call_per_key_in_arrival_order() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch=64)
    sizes: list[int] = []
    batcher.on_batch = sizes.append

    async def main() -> list[Any]:
        jobs = [batcher.submit("a" if i % 3 else "b", i) for i in range(12)]
        return await asyncio.gather(*jobs)

    out = run(main())
    assert out == [("a" if i % 3 else "b", i * 10) for i in range(12)]
    assert fn.calls == [("b", [0, 3, 6, 9]), ("a", [1, 2, 4, 5, 7, 8, 10, 11])]
    assert sizes == [4, 8]


def test_max_batch_splits_a_large_batch() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch=4)

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.submit("k", i) for i in range(10)))

    assert run(main()) == [("k", i * 10) for i in range(10)]
    assert [items for _, items in fn.calls] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_lone_call_is_answered_alone_and_later_calls_form_new_batches() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn)

    async def main() -> list[Any]:
        first = await batcher.submit("k", 1)
        second = await batcher.submit("k", 2)
        return [first, second]

    assert run(main()) == [("k", 10), ("k", 20)]
    assert fn.calls == [("k", [1]), ("k", [2])]


def test_an_error_reaches_every_waiter_of_its_batch_only() -> None:
    fn = Recorder(fail_on="bad")
    batcher = MicroBatcher(fn)

    async def main() -> list[Any]:
        jobs = [batcher.submit("bad", 1), batcher.submit("ok", 2), batcher.submit("bad", 3)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    bad1, ok, bad3 = run(main())
    assert isinstance(bad1, ValueError) and isinstance(bad3, ValueError)
    assert ok == ("ok", 20)


def test_a_wrong_number_of_results_is_an_error_not_a_wrong_answer() -> None:
    batcher = MicroBatcher(lambda key, items: [0])

    async def main() -> list[Any]:
        jobs = [batcher.submit("k", 1), batcher.submit("k", 2)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in run(main()))


def test_a_cancelled_caller_is_left_out() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn)

    async def main() -> Any:
        gone = asyncio.ensure_future(batcher.submit("k", 1))
        kept = asyncio.ensure_future(batcher.submit("k", 2))
        await asyncio.sleep(0)  # both queued, the flush not run yet
        gone.cancel()
        return await kept

    assert run(main()) == ("k", 20)
    assert fn.calls == [("k", [2])]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
