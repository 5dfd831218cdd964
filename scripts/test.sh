#!/usr/bin/env bash
# Install everything the test suite needs and run it. This is the README's test
# command, and .ci/run runs exactly this.
#
#   scripts/test.sh [pytest arguments]
#
# It makes a virtual environment in .venv (kept between runs), installs envcap with its
# test extras into it, runs the gate (ruff, then mypy, as pyproject.toml configures them;
# either failing stops it), starts the container test bed when it is needed (see
# scripts/testbed.sh), and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,build,export]'

# The gate: lint and types before any test runs.
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy

if [ -x scripts/testbed.sh ] && [ "${ENVCAP_SKIP_TESTBED:-0}" != 1 ]; then
    scripts/testbed.sh up
    # The test bed says where its registry and base images are.
    set -a
    # shellcheck disable=SC1091
    . "${ENVCAP_TESTBED_DIR:-/var/tmp/envcap-testbed}/env"
    set +a
fi

exec .venv/bin/python -m pytest "$@"
