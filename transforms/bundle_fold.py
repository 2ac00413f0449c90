"""Combining what is Flattened first: each bundle folded into one accumulator where it is made.

Why: Beam's in-memory runner (2.78) never fuses a multi-input Flatten; it holds every element
that enters one until the next stage runs. Events made per record and then Flattened before a
combine (the ledger's counts from every stage, decontaminate's summary from its kept and
rejected records) were a buffer that grew with the corpus on one machine. `FoldBundles(fn)`
hands the Flatten one accumulator of `fn` per bundle instead, and `Merged(fn)` combines those
accumulators into `fn`'s output. Runners that fuse the Flatten (Dataflow, Flink) see fewer,
larger elements and the same result. A bundle that fails is retried whole with its output
discarded, so the result stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue


class _FoldBundle(beam.DoFn):
    def __init__(self, fn: beam.CombineFn):
        super().__init__()
        self._fn = fn
        self._acc: Any = None

    def setup(self) -> None:
        self._fn.setup()

    def start_bundle(self) -> None:
        self._acc = None

    def process(self, element: Any) -> Iterator[Any]:
        if self._acc is None:
            self._acc = self._fn.create_accumulator()
        self._acc = self._fn.add_input(self._acc, element)
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._acc is not None:  # a bundle with no elements adds nothing
            yield GlobalWindows.windowed_value(self._acc)
        self._acc = None

    def teardown(self) -> None:
        self._fn.teardown()


class FoldBundles(beam.PTransform):
    """One accumulator of `fn` per bundle that had elements (global window: iptkit's runs are
    batch)."""

    def __init__(self, fn: beam.CombineFn):
        super().__init__()
        self._fn = fn

    def expand(self, pcoll):
        return pcoll | beam.ParDo(_FoldBundle(self._fn))


class Merged(beam.CombineFn):
    """`fn` over its own accumulators (from `FoldBundles`) instead of its inputs."""

    def __init__(self, fn: beam.CombineFn):
        super().__init__()
        self._fn = fn

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self._fn.setup(*args, **kwargs)

    def create_accumulator(self) -> Any:
        return self._fn.create_accumulator()

    def add_input(self, acc: Any, folded: Any) -> Any:
        return self._fn.merge_accumulators([acc, folded])

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        return self._fn.merge_accumulators(accumulators)

    def extract_output(self, acc: Any) -> Any:
        return self._fn.extract_output(acc)

    def teardown(self, *args: Any, **kwargs: Any) -> None:
        self._fn.teardown(*args, **kwargs)
