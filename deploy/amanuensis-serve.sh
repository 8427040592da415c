#!/bin/sh
# Start the Amanuensis HTTP server in the foreground (systemd, a container, or a terminal).
#
# Settings come from AMANUENSIS_* environment variables and from flags passed to this script
# (flags win); see the settings table in README.md. An environment file is read first when present:
#   AMANUENSIS_ENV_FILE (default /etc/amanuensis/amanuensis.env)
# The interpreter is $AMANUENSIS_VENV/bin/python when AMANUENSIS_VENV is set, else the python3 on PATH
# (AMANUENSIS_PYTHON overrides both).
#
#   deploy/amanuensis-serve.sh --port 9004 --workers 2
set -eu

env_file="${AMANUENSIS_ENV_FILE:-/etc/amanuensis/amanuensis.env}"
if [ -r "$env_file" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
fi

if [ -n "${AMANUENSIS_PYTHON:-}" ]; then
    python="$AMANUENSIS_PYTHON"
elif [ -n "${AMANUENSIS_VENV:-}" ]; then
    python="$AMANUENSIS_VENV/bin/python"
else
    python="$(command -v python3 || true)"
fi
if [ -z "$python" ] || ! "$python" -c "import amanuensis.server" 2>/dev/null; then
    echo "amanuensis-serve: no Python with amanuensis installed (set AMANUENSIS_VENV or AMANUENSIS_PYTHON)" >&2
    exit 2
fi

# exec: the server becomes this process, so SIGTERM from systemd reaches uvicorn directly and
# in-flight requests finish before it exits.
exec "$python" -m amanuensis.server "$@"
