"""The dynamic batcher in front of a runner, and the executors that run its batches.

Requests (one image each) arrive on LoadGen's issue thread and wait in a queue. The batching
loop, in the thread that serves (:meth:`DynamicBatcher.serve_here`: the main thread), takes the
first waiting request, then keeps taking requests until the batch holds ``max_batch`` images or
``max_delay_s`` has passed since that first request arrived
(``max_delay_s = 0``: whatever is already queued — greedy dynamic batching, as Triton's
dynamic batcher does with no queue delay). The images are collated from the
preprocessed evaluation tensor (``runner.prepare`` on the gathered rows: the host-side
collation and copy a server does per batch) and handed to an executor:

* :class:`SyncExecutor` runs the runner in the batching loop: one batch in flight;
* a backend's asynchronous executor (``Backed.serve``, e.g. OpenVINO's ``AsyncInferQueue``)
  keeps several batches in flight and calls back when each finishes.

Each finished batch's logits are split by row and paired with the requests they answer
(:meth:`DynamicBatcher.pair`); ``respond`` reports them (to LoadGen, see harness.py).
A batch smaller than the runner's fixed shapes is padded to the next allowed size with
copies of its last image, and the padding rows are dropped before responding.

Times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Request:
    """One query sample: LoadGen's response id, the sample's index in the evaluation set, arrival time (s)."""

    id: int
    index: int
    arrival_s: float


class Executor(Protocol):
    """Runs prepared batches. ``submit`` may block until a slot is free; ``done(output)`` is called when the
    batch finished (on any thread). ``in_flight`` is how many batches it can run at once."""

    in_flight: int
    info: dict[str, Any]

    def submit(self, x: Any, done: Callable[[Any], None]) -> None: ...

    def drain(self) -> None: ...


class SyncExecutor:
    """The runner itself, one batch at a time, in the calling thread (device synchronized after each)."""

    def __init__(self, forward: Callable[[Any], Any], sync: Callable[[], None] = lambda: None):
        self.forward, self.sync = forward, sync
        self.in_flight = 1
        self.info: dict[str, Any] = {"executor": "synchronous", "in_flight": 1}

    def submit(self, x: Any, done: Callable[[Any], None]) -> None:
        out = self.forward(x)
        self.sync()
        done(out)

    def drain(self) -> None:
        """Nothing is pending: submit returns when its batch is done."""


def padded_size(n: int, sizes: Sequence[int] | None) -> int:
    """The smallest allowed batch size >= n (``sizes`` ascending), or n when every size is allowed."""
    if not sizes:
        return n
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"a batch of {n} is larger than the largest allowed size {sizes[-1]}")


@dataclass
class BatchLog:
    """What the batcher did: batch sizes formed, and each batch's service time (submit to done, s)."""

    sizes: Counter = field(default_factory=Counter)
    service_s: list[float] = field(default_factory=list)
    padded_rows: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        batches = sum(self.sizes.values())
        images = sum(k * v for k, v in self.sizes.items())
        return {"batches": batches, "mean_batch_size": images / batches if batches else None,
                "batch_size_histogram": {str(k): v for k, v in sorted(self.sizes.items())},
                "padded_rows": self.padded_rows, "errors": self.errors[:5]}


class DynamicBatcher:
    """Queue -> batches of at most ``max_batch`` -> ``executor`` -> ``respond([(request, logits row)])``.

    ``images``: the preprocessed evaluation images, CPU float32 (N, 3, H, W); ``prepare``: a
    runner's ``prepare`` (CPU float32 batch -> its input); ``to_logits``: its ``logits`` (output ->
    CPU float32 (B, 1000)); ``pad_sizes``: the batch sizes the runner accepts, or None for any.
    """

    def __init__(self, images: Any, prepare: Callable[[Any], Any], to_logits: Callable[[Any], Any],
                 executor: Executor, respond: Callable[[list[tuple[Request, np.ndarray]]], None],
                 max_batch: int, max_delay_s: float = 0.0, pad_sizes: Sequence[int] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.images, self.prepare, self.to_logits = images, prepare, to_logits
        self.executor, self.respond = executor, respond
        self.max_batch, self.max_delay_s = max_batch, max_delay_s
        self.pad_sizes = sorted(pad_sizes) if pad_sizes else None
        self.log = BatchLog()
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ LoadGen's side

    def serve_here(self) -> None:
        """Batch in the calling thread until :meth:`close` is called (from another thread), then drain.

        The model runs where this is called. For torch that must be the main thread: a forward pass from
        another thread starts a second OpenMP team beside the main thread's idle, spinning one, 2-4x slower
        on 2 cores (measured: DenseNet-121 at 224 px, batch 1: 115 ms in the main thread, 290-460 ms in
        another)."""
        self._loop()
        self.executor.drain()

    def refuse_the_rest(self) -> None:
        """After the batching loop was interrupted (Ctrl-C, an error): answer every request already queued and
        still to come with NaN until :meth:`close`, so LoadGen finishes its test instead of waiting forever."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.respond([(item, np.full(1, np.nan, dtype=np.float32))])

    def enqueue(self, requests: Sequence[Request]) -> None:
        for r in requests:
            self._queue.put(r)

    def close(self) -> None:
        """No more requests: the batching loop ends once what is queued has been batched."""
        self._queue.put(None)

    # ------------------------------------------------------------ the batching loop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._run(batch)
            if stop:
                return

    def _gather(self, first: Request) -> tuple[list[Request], bool]:
        """``first`` and what follows it within the delay, up to max_batch; (batch, whether stop was seen)."""
        batch = [first]
        deadline = first.arrival_s + self.max_delay_s
        while len(batch) < self.max_batch:
            wait = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[Request]) -> None:
        try:
            self._submit(batch)
        except BaseException as exc:  # answered with NaN so LoadGen finishes; the error is in the batch log
            with self._lock:
                self.log.errors.append(f"{type(exc).__name__}: {exc}")
            self.respond([(r, np.full(1, np.nan, dtype=np.float32)) for r in batch])
            if not isinstance(exc, Exception):  # Ctrl-C and the like go on once this batch is answered
                raise

    def _submit(self, batch: list[Request]) -> None:
        n = len(batch)
        size = padded_size(n, self.pad_sizes)
        rows = [r.index for r in batch] + [batch[-1].index] * (size - n)
        x = self.prepare(self.images[rows])
        with self._lock:
            self.log.sizes[n] += 1
            self.log.padded_rows += size - n
        start = time.perf_counter()

        def done(out: Any) -> None:
            elapsed = time.perf_counter() - start
            try:
                logits = np.asarray(self.to_logits(out), dtype=np.float32)[:n]
                pairs = self.pair(batch, logits)
            except Exception as exc:  # reported; the requests are still answered so LoadGen does not hang
                with self._lock:
                    self.log.errors.append(f"{type(exc).__name__}: {exc}")
                pairs = [(r, np.full(1, np.nan, dtype=np.float32)) for r in batch]
            with self._lock:
                self.log.service_s.append(elapsed)
            self.respond(pairs)

        self.executor.submit(x, done)

    def pair(self, batch: list[Request], logits: np.ndarray) -> list[tuple[Request, np.ndarray]]:
        """Row i of the batch's logits answers request i."""
        return [(r, logits[i]) for i, r in enumerate(batch)]
