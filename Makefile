# The two commands a newcomer runs. Each installs what it needs first.
.PHONY: run test lint bench

run:
	@scripts/ensure-venv.sh
	.venv/bin/certpilot up

test:
	@scripts/ensure-venv.sh test
	@scripts/install-sysdeps.sh
	.venv/bin/python -m pytest

lint:
	@scripts/ensure-venv.sh test
	.venv/bin/ruff check certpilot blocks tasks flows tests bench
