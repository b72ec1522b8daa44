"""Whether Kioku runs offline, decided in one place for the badge on every page, search
results, the index status and answers.

Two things can be offline, and during a model switch they differ:
- **search**: queries are embedded, and vectors read, with the local provider. That is true
  when the *active* embedding space (the one search reads) holds local vectors, not when the
  key is missing: after `OPENAI_API_KEY` is set, search stays on the local vectors until the
  switch to the OpenAI model completes (`manage.py reembed`).
- **answers**: no chat model (no `OPENAI_API_KEY`), so answers are extractive.
"""

from dataclasses import dataclass

from django.conf import settings

from knowledge.embed.providers import is_local_model
from knowledge.embed.spaces import VectorSpace, space_state


@dataclass(frozen=True)
class OfflineState:
    search: bool
    answers: bool

    @property
    def is_offline(self) -> bool:
        """Anything offline: the badge shows it."""
        return self.search or self.answers

    @property
    def label(self) -> str:
        if self.search and self.answers:
            return "offline mode"
        if self.search:
            return "offline search"
        if self.answers:
            return "extractive answers"
        return "online"

    @property
    def explanation(self) -> str:
        if self.search and self.answers:
            return (
                "No OPENAI_API_KEY is set: embeddings come from the local provider and answers "
                "are extractive."
            )
        if self.search:
            return (
                "Search still reads the local provider's vectors: the switch to the configured "
                "OpenAI model has not completed (Index page). Answers use the language model."
            )
        if self.answers:
            return (
                "No OPENAI_API_KEY is set: answers are extractive; the index holds vectors of "
                "another model, so search falls back to keywords."
            )
        return "Embeddings and answers use the configured OpenAI models."


def answers_offline() -> bool:
    """No chat model is configured: answers are extractive."""
    return not settings.OPENAI_API_KEY


def offline_state(*, space: VectorSpace | None = None) -> OfflineState:
    """What is offline now. `space`: the active embedding space when the caller has read it
    already (saves the query)."""
    active = space if space is not None else space_state().active
    return OfflineState(search=is_local_model(active.model), answers=answers_offline())
