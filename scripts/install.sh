#!/usr/bin/env bash
# install.sh — install EGW's binaries, systemd units and directories (used by `make install`).
#
#   scripts/install.sh                 # into / (needs root), then: systemctl daemon-reload
#   DESTDIR=/tmp/stage scripts/install.sh   # staged install, no root, no systemd needed
#
# Environment:
#   DESTDIR   staging root prepended to every path (default: empty)
#   PREFIX    binaries go to $PREFIX/bin (default: /usr/local)
#   BINDIR    where the built binaries are (default: <repo>/bin)
#   SYSTEMD_UNIT_DIR  (default: /etc/systemd/system)
#
# Installs bin/{cloudgateway,edgegateway,egwctl} to $PREFIX/bin (0755), the units to the unit
# directory (0644), creates /etc/egw (0755) and /var/lib/egw (0700), and writes
# /etc/sysctl.d/90-egw.conf (IPv4 forwarding) if absent. An existing configuration file is
# never overwritten; example configurations go next to it as *.yaml.example. Installing
# into / also creates the system user egw the units run as (systemd gives it the state
# and runtime directories; files it must read, such as an apiTokenFile, must be its own).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BINDIR=${BINDIR:-$repo/bin}
SYSTEMD_UNIT_DIR=${SYSTEMD_UNIT_DIR:-/etc/systemd/system}

bins=(cloudgateway edgegateway egwctl)
units=(egw-cloudgateway.service egw-edgegateway.service)

for b in "${bins[@]}"; do
	if [[ ! -x $BINDIR/$b ]]; then
		echo "install.sh: $BINDIR/$b missing: run make build first" >&2
		exit 1
	fi
done

if [[ -z $DESTDIR && $(id -u) -ne 0 ]]; then
	echo "install.sh: installing into / needs root (or set DESTDIR)" >&2
	exit 1
fi

bin_dest=$DESTDIR$PREFIX/bin
unit_dest=$DESTDIR$SYSTEMD_UNIT_DIR
etc=$DESTDIR/etc/egw
state=$DESTDIR/var/lib/egw

install -d -m 0755 "$bin_dest" "$unit_dest" "$etc" "$DESTDIR/etc/sysctl.d"
install -d -m 0700 "$state"
chmod 0700 "$state" # also when it existed with a wider mode

for b in "${bins[@]}"; do
	install -m 0755 "$BINDIR/$b" "$bin_dest/$b"
	echo "installed $bin_dest/$b"
done

for u in "${units[@]}"; do
	src=$here/systemd/$u
	if [[ $PREFIX != /usr/local ]]; then
		# The units name /usr/local/bin; follow a different PREFIX.
		sed "s#/usr/local/bin/#$PREFIX/bin/#g" "$src" >"$unit_dest/$u.tmp"
		chmod 0644 "$unit_dest/$u.tmp"
		mv "$unit_dest/$u.tmp" "$unit_dest/$u"
	else
		install -m 0644 "$src" "$unit_dest/$u"
	fi
	echo "installed $unit_dest/$u"
done

# Example configurations; the real files are written by the operator (or by
# `egwctl gateway add`, which prints a ready edgegateway.yaml) and are never replaced.
for conf in cloudgateway edgegateway; do
	if [[ -f $here/$conf.yaml.example ]]; then
		install -m 0644 "$here/$conf.yaml.example" "$etc/$conf.yaml.example"
	fi
	if [[ -e $etc/$conf.yaml ]]; then
		echo "kept existing $etc/$conf.yaml"
	fi
done

sysctl_conf=$DESTDIR/etc/sysctl.d/90-egw.conf
if [[ ! -e $sysctl_conf ]]; then
	printf '# EGW gateways route between the site LAN and vp0.\nnet.ipv4.ip_forward = 1\n' >"$sysctl_conf"
	chmod 0644 "$sysctl_conf"
	echo "installed $sysctl_conf"
fi

if [[ -z $DESTDIR ]]; then
	if ! getent passwd egw >/dev/null; then
		useradd --system --user-group --home-dir /var/lib/egw --no-create-home --shell /usr/sbin/nologin egw
		echo "created system user egw"
	fi
	chown egw:egw "$state"
	if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		systemctl daemon-reload
		echo "systemd reloaded; enable with: systemctl enable --now egw-cloudgateway (or egw-edgegateway)"
	fi
	if command -v sysctl >/dev/null 2>&1; then
		sysctl -q -p "$sysctl_conf" || true
	fi
fi
