.PHONY: run test lint format
run:
	./scripts/run
test:
	./scripts/test
lint:
	uv run ruff check . && uv run ruff format --check .
format:
	uv run ruff check --fix . && uv run ruff format .
