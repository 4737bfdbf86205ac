#!/usr/bin/env bash
# Installs the Debian packages the real test servers need, only when one is missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) the first time.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
have pebble /usr/bin/pebble || need+=(pebble)
have named /usr/sbin/named || need+=(bind9)
have named-checkconf /usr/bin/named-checkconf || need+=(bind9-utils)
have nginx /usr/sbin/nginx || need+=(nginx)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
have openssl /usr/bin/openssl || need+=(openssl)
have prometheus /usr/bin/prometheus || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Installing bind9/nginx/postgresql/prometheus would start system services; the suite runs its own on
# loopback, so block service starts during the install (and only if we created the blocker).
created=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d; created=1
fi
trap '[ -n "$created" ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
