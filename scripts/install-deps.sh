#!/usr/bin/env bash
# install-deps.sh — install the OS tools EGW's netns tests, demo and benchmarks need
# (nftables: the NAT boxes in front of edges in the netns tests).
#
# Idempotent and non-interactive: a package whose command is already present is skipped,
# `apt-get update` runs only when something is missing, and the script prints what it
# installed. Called by .ci/run, `make demo`, `make bench` and `make test`.
#
# Usage: scripts/install-deps.sh [--check]   (--check: report what is missing, install nothing)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# package  command-that-proves-it-is-installed
required=(
	"iproute2 ip"
	"iputils-ping ping"
	"iperf3 iperf3"
	"nftables nft"
	"wireguard-tools wg"
	"dnsutils dig"
	"netcat-openbsd nc"
	"curl curl"
	"procps ps"
	"psmisc killall"
	"ethtool ethtool"
	"systemd systemd-analyze" # scripts/test-install.sh rates the units (security --offline)
	"util-linux setpriv"      # and runs the daemons under their settings
)

check_only=0
[[ ${1:-} == --check ]] && check_only=1

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }

missing=()
for entry in "${required[@]}"; do
	read -r pkg cmd <<<"$entry"
	# nc is also provided by other netcat flavours; the tests need the OpenBSD one (-N, -U).
	if [[ $pkg == netcat-openbsd ]]; then
		dpkg-query -W -f='${Status}' netcat-openbsd 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
		continue
	fi
	have "$cmd" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all present (${#required[@]} packages)"
	exit 0
fi

if ((check_only)); then
	echo "install-deps: missing: ${missing[*]}"
	exit 1
fi

if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo -n)
	else
		echo "install-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
else
	SUDO=()
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: no apt-get; install these by hand: ${missing[*]}" >&2
	exit 1
fi

echo "install-deps: installing: ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
# iperf3's postinst asks whether to start a daemon; answer no.
echo "iperf3 iperf3/start_daemon boolean false" | "${SUDO[@]}" debconf-set-selections 2>/dev/null || true
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed: ${missing[*]}"
