"""Job events for Server-Sent Events clients, handed from the dispatcher thread to the asyncio loop.

Events are published from any thread; each subscriber is an asyncio queue on the server's loop, fed through
`loop.call_soon_threadsafe`, so the generation thread never blocks on a slow client. Every event of a job has an
increasing `id`, which SSE clients echo as Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import msgspec

TERMINAL = ("completed", "failed", "cancelled")


class Event(msgspec.Struct):
    id: int
    type: str  # queued, started, loading, progress, preview, completed, failed, cancelled
    data: dict[str, Any]


class Subscription:
    """One listener's queue of events for one job."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)

    def _put(self, event: Event) -> None:
        if self.queue.full():
            if event.type in ("progress", "preview"):
                return  # a stalled client loses intermediate steps, never the outcome
            self.queue.get_nowait()
        self.queue.put_nowait(event)


class EventHub:
    """Publish/subscribe per job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = {}
        self._ids = itertools.count(1)

    def subscribe(self, job_id: str) -> Subscription:
        subscription = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(job_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, job_id: str, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[job_id]

    def next_id(self) -> int:
        return next(self._ids)

    def publish(self, job_id: str, type: str, data: dict[str, Any]) -> None:
        """Deliver an event to the job's subscribers; safe from any thread."""
        event = Event(self.next_id(), type, data)
        with self._lock:
            subscribers = list(self._subscribers.get(job_id, ()))
        for subscription in subscribers:
            try:
                subscription.loop.call_soon_threadsafe(subscription._put, event)
            except RuntimeError:
                pass  # that client's loop is closed: the server is shutting down

    def has_subscribers(self, job_id: str) -> bool:
        with self._lock:
            return bool(self._subscribers.get(job_id))
