#!/usr/bin/env bash
# Install whichever build, test and benchmark packages are missing (Debian 12).
set -eu
pkgs="build-essential pkg-config libssl-dev libconfig-dev libmsgpack-dev liblmdb-dev
      libpcre2-dev libcmocka-dev python3 python3-pytest curl wrk nginx haproxy openssl
      strace valgrind"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# nginx's package starts a service on :80 when installed; keep it from doing so.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
	$sudo chmod +x /usr/sbin/policy-rc.d
	trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
