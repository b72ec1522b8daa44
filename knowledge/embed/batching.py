"""Fitting inputs to a provider's limits: truncating an over-long text, grouping texts into
requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from knowledge.embed.base import EmbeddingLimits

if TYPE_CHECKING:
    from knowledge.tokens import TokenCounter


# Share of a token limit we plan to use. tiktoken's count is exact for OpenAI's models, but the
# server may run another tokenizer (OPENAI_BASE_URL), hence a little slack; the estimator can be
# 20–25 % low for short-word English and symbol-heavy text, hence more.
EXACT_TOKEN_MARGIN = 0.95
ESTIMATED_TOKEN_MARGIN = 0.75
# Per request, counts come without saying how they were made; a rejected oversize request is
# bisected anyway, so this only has to make rejections rare.
REQUEST_TOKEN_MARGIN = 0.8


def input_token_budget(*, limits: EmbeddingLimits, counter: TokenCounter) -> int:
    margin = EXACT_TOKEN_MARGIN if counter.is_exact else ESTIMATED_TOKEN_MARGIN
    return max(1, int(limits.max_input_tokens * margin))


def fit_input(text: str, *, limits: EmbeddingLimits, counter: TokenCounter) -> str:
    """`text`, or its longest prefix (cut between characters) that `counter` puts within the
    input budget: `max_input_tokens` × 0.95 for an exact counter, × 0.75 for an estimate.

    The API refuses an over-long input rather than truncating it; the rule here keeps the
    beginning — titles, headings and the first paragraphs — which usually says what a text is
    about. Texts within the budget come back unchanged.
    """
    budget = input_token_budget(limits=limits, counter=counter)
    if len(text.encode("utf-8")) <= budget:
        # Byte-level BPE never makes more tokens than bytes (nor does our estimator): no need
        # to count.
        return text
    total = counter.count(text)
    if total <= budget:
        return text
    # Invariant: text[:low] fits, text[:high] does not. Start next to the proportional guess.
    low, high = 0, len(text)
    guess = len(text) * budget // total
    if 0 < guess < high:
        if counter.count(text[:guess]) <= budget:
            low = guess
        else:
            high = guess
    while high - low > 1:
        middle = (low + high) // 2
        if counter.count(text[:middle]) <= budget:
            low = middle
        else:
            high = middle
    return text[:low]


def plan_batches(
    token_counts: Sequence[int], *, limits: EmbeddingLimits, margin: float = REQUEST_TOKEN_MARGIN
) -> list[list[int]]:
    """Indices of `token_counts` grouped in order into requests of at most `max_inputs` inputs
    and `max_request_tokens` × `margin` tokens. A single input over that budget (which
    `fit_input` prevents) gets a request of its own."""
    budget = max(1, int(limits.max_request_tokens * margin))
    batches: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for index, count in enumerate(token_counts):
        count = max(1, count)  # the API counts an input as at least one token
        if current and (len(current) >= limits.max_inputs or current_tokens + count > budget):
            batches.append(current)
            current, current_tokens = [], 0
        current.append(index)
        current_tokens += count
    if current:
        batches.append(current)
    return batches
