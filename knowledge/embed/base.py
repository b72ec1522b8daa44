"""What every embedding provider shares: the interface, the request limits, and the errors.

Providers: OpenAI (or any OpenAI-compatible server) and a local, offline one.

`get_embedding_provider()` picks OpenAI when `OPENAI_API_KEY` is set, otherwise the local
hashing provider. A provider's `embed()` makes exactly one request and raises a
`ProviderError` subclass that says what to do next:

| error                    | cause                                        | what the caller does      |
|--------------------------|----------------------------------------------|---------------------------|
| `TransientProviderError` | 429 rate limit, 5xx, timeout, connection     | retry with backoff        |
| `QuotaExceededError`     | 429 `insufficient_quota`                     | pause the pipeline        |
| `InputRejectedError`     | 400/413/422 about the inputs                 | isolate the bad input(s)  |
| `ProviderConfigError`    | 401/403/404, bad model/dimensions parameter, | pause; a person must fix  |
|                          | vectors of the wrong size                    | the settings              |
| `RetryLaterError`        | the server asks to wait longer than allowed  | hand the rows back, later |

`embed_with_retries()` applies those rules to one planned batch. Inputs are made to fit before
they are sent: `fit_input()` truncates an over-long text by rule, `plan_batches()` groups texts
under the per-request limits, so the API's limits are never hit on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class EmbeddingLimits:
    """What one embeddings request may carry. The defaults are OpenAI's."""

    max_inputs: int = 2048
    max_input_tokens: int = 8192
    max_request_tokens: int = 300_000


# --- Errors -----------------------------------------------------------------------------------


class ProviderError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientProviderError(ProviderError):
    """Rate limited (429), server error (5xx), timeout or connection failure: worth retrying.
    `retry_after` is the server's requested wait in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceededError(ProviderError):
    """429 `insufficient_quota`: the account is out of credit. Retrying will not help."""


class InputRejectedError(ProviderError):
    """The request was refused because of its inputs. `index` is the position (within the
    request) of the input the server named, if it named one."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ProviderConfigError(ProviderError):
    """Bad key, unknown model, unsupported dimensions, vectors of the wrong size: a person has to
    change the settings."""


class RetryLaterError(ProviderError):
    """The server asked for a longer wait than a worker may block (`max_wait`)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- The provider interface ---------------------------------------------------------------------


@runtime_checkable
class EmbeddingProvider(Protocol):
    name: str  # "openai" or "local"
    model: str  # recorded on every embedded row
    dimensions: int
    is_offline: bool
    limits: EmbeddingLimits

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One API request (or one local computation); vectors in input order."""
        ...
