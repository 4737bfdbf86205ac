# The two commands a newcomer runs. Each installs what it needs first.
.PHONY: run test lint bench lock

run:
	@scripts/ensure-venv.sh
	.venv/bin/certpilot up

# Parallel test workers (2 cores: 2); each test file runs whole in one worker. 0: one process.
TEST_WORKERS ?= 2

test:
	@scripts/ensure-venv.sh test
	@scripts/install-sysdeps.sh
	.venv/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint:
	@scripts/ensure-venv.sh test
	.venv/bin/ruff check certpilot blocks tasks flows tests bench

# Regenerate requirements.lock (pinned, hash-checked) after pyproject.toml's dependencies change.
lock:
	python3 -m venv /tmp/certpilot-lock && /tmp/certpilot-lock/bin/pip install -q "pip-tools>=7.4,<8"
	CUSTOM_COMPILE_COMMAND="make lock" /tmp/certpilot-lock/bin/pip-compile --quiet --extra test --generate-hashes \
	  --no-emit-index-url --no-emit-find-links \
	  --strip-extras --allow-unsafe -o requirements.lock pyproject.toml
