# The two commands a newcomer needs; each installs what it needs first.
.PHONY: run test lint schema

run:  ## install, then start the server and a render worker on the embedded default
	@scripts/bootstrap.sh
	.venv/bin/reelgraph run

test:  ## install (with the diffusers and dev extras), then run the whole test suite
	@scripts/bootstrap.sh dev,diffusers
	.venv/bin/python -m pytest

lint:
	@scripts/bootstrap.sh dev,diffusers
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

schema:
	.venv/bin/reelgraph export-schema schema.graphql
