# The two commands a newcomer needs; each installs what it needs first, from the hashed locks
# in requirements/ (see "Dependencies and upgrades" in the README).
.PHONY: run test lint schema lock lock-check lock-upgrade test-latest

run:  ## install requirements/base.lock, then start the server and a render worker on the embedded default
	@scripts/bootstrap.sh base
	.venv/bin/reelgraph run

test:  ## install requirements/dev.lock (diffusers and dev extras), then run the whole test suite
	@scripts/bootstrap.sh dev
	.venv/bin/python -m pytest

lint:
	@scripts/bootstrap.sh dev
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

schema:
	.venv/bin/reelgraph export-schema schema.graphql

lock:  ## refresh requirements/*.lock from pyproject.toml, keeping every pin it still allows
	@scripts/lock.sh

lock-check:  ## fail when pyproject.toml and requirements/*.lock disagree (CI runs it)
	@scripts/lock.sh --check

lock-upgrade:  ## move the locks to the newest allowed releases (PACKAGES="redis ..." for some)
	@scripts/lock.sh --upgrade $(PACKAGES)

test-latest:  ## the suite against the newest releases pyproject.toml allows, in a throwaway venv
	@scripts/test-latest.sh $(PYTEST_ARGS)
