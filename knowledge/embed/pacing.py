"""Pacing requests under the provider's requests- and tokens-per-minute limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    pass


class RequestPacer:
    """Keeps this process under the provider's requests- and tokens-per-minute limits
    (`KIOKU_EMBEDDING_RPM`, `KIOKU_EMBEDDING_TPM`; 0 = none) with a sliding 60 s window, the way
    the API counts, so limits are met by waiting instead of by 429s.

    A request's tokens are estimated with our counter, scaled by the ratio between what the
    server reported and what we estimated so far (our estimator is not the server's tokenizer),
    and replaced by the server's figure once the answer arrives. With several worker processes,
    give each its share of the limit."""

    def __init__(
        self,
        *,
        rpm: int = 0,
        tpm: int = 0,
        window: float = 60.0,
        headroom: float = 0.98,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpm = rpm
        self.tpm = int(tpm * headroom)
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.events: list[list[float]] = []  # [sent_at, tokens]
        self.ratio = 1.0  # server tokens / estimated tokens
        self.lock = threading.Lock()

    def acquire(self, estimated_tokens: int) -> list[float]:
        while True:
            with self.lock:
                now = self.clock()
                self.events = [event for event in self.events if event[0] > now - self._span()]
                tokens = estimated_tokens * self.ratio
                if self.tpm and tokens > self.tpm:
                    tokens = self.tpm  # a single request larger than the limit: send it alone
                over_requests = self.rpm and len(self.events) + 1 > self.rpm
                over_tokens = self.tpm and sum(e[1] for e in self.events) + tokens > self.tpm
                if not over_requests and not over_tokens:
                    event = [now, tokens]
                    self.events.append(event)
                    return event
                wait = self._wait_needed(now, tokens)
            # Re-check often: other threads settle or release capacity meanwhile.
            self.sleep(min(max(wait, 0.01), 0.25))

    def _span(self) -> float:
        # The server's window starts when it receives a request, a little after we send it:
        # keep events slightly longer than the window so the two never disagree.
        return self.window + min(0.2, self.window * 0.01)

    def _wait_needed(self, now: float, tokens: float) -> float:
        """Time until enough of the window has expired for this request."""
        waits = []
        if self.rpm and len(self.events) + 1 > self.rpm:
            waits.append(self.events[len(self.events) - self.rpm][0] + self._span() - now)
        if self.tpm:
            excess = sum(e[1] for e in self.events) + tokens - self.tpm
            for sent_at, used in self.events:
                excess -= used
                if excess <= 0:
                    waits.append(sent_at + self._span() - now)
                    break
        return max(waits, default=0.0)

    def settle(
        self, event: list[float], *, estimated_tokens: int, actual_tokens: int | None
    ) -> None:
        if actual_tokens is None:
            return
        with self.lock:
            # The server counted the request somewhere between our send and its answer: keep
            # the later moment so our window never expires before the server's does.
            event[0] = self.clock()
            event[1] = actual_tokens
            if estimated_tokens > 0:
                # Smoothed, so one odd request does not swing the estimate.
                self.ratio = 0.7 * self.ratio + 0.3 * (actual_tokens / estimated_tokens)


_pacers: dict[tuple[int, int], RequestPacer] = {}
_pacers_lock = threading.Lock()


def get_request_pacer() -> RequestPacer | None:
    """The process-wide pacer for the configured limits (None when no limit is set)."""
    rpm, tpm = settings.KIOKU_EMBEDDING_RPM, settings.KIOKU_EMBEDDING_TPM
    if not rpm and not tpm:
        return None
    with _pacers_lock:
        if (rpm, tpm) not in _pacers:
            _pacers[(rpm, tpm)] = RequestPacer(rpm=rpm, tpm=tpm)
        return _pacers[(rpm, tpm)]
