#!/usr/bin/env bash
# Installs the system packages the test suite drives, when missing: Redis and
# PostgreSQL (the tests start their own servers on free loopback ports, see
# tests/servers.py) and Chromium (browser tests). Called by `make test`.
set -euo pipefail

say() { printf '==> %s\n' "$*"; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if ((${#missing[@]})) && [[ $(id -u) -ne 0 ]]; then
    say "missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
    exit 1
fi
if ((${#missing[@]})); then
    say "installing missing system packages: ${missing[*]}"
    # Keep package scripts from starting redis/postgres services: unneeded,
    # and a service init inside a container can fail or hang.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        say "temporarily blocking service start-up (/usr/sbin/policy-rc.d)"
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    say "apt-get update"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    say "system packages present: redis-server, postgresql, chromium"
fi

say "redis-server: $(redis-server --version | cut -d' ' -f3)"
say "postgresql: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
say "chromium: $(command -v chromium)"

