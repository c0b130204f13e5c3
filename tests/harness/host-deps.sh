#!/usr/bin/env bash
# Install the Debian packages the harness needs on the controller, only when missing:
# docker (engine + client), debootstrap for the base image, and the servers that the pytest
# integration tests start on loopback (PostgreSQL, PgBouncer, Redis, nginx).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"

PKGS=(docker.io debootstrap postgresql postgresql-contrib pgbouncer redis-server nginx-light
      openssh-client rsync git make wrk shellcheck)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}) and not root: install them or run as root"
need_disk 1500 /var/cache/apt
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Services from these packages must not start on the controller: the tests start their own.
policy_added=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  policy_added=1
fi
trap '[ "$policy_added" -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq >/dev/null || die "apt-get update failed: the Debian mirror cannot be read"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || die "apt-get install ${missing[*]} failed"
