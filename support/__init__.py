"""Test and benchmark support shared by `tests/` and `bench/` (never imported by the app):
`support.openai_stub`, the local OpenAI-compatible server."""
