#!/usr/bin/env bash
# test-install.sh — stage scripts/install.sh into a temporary DESTDIR with stand-in binaries
# and check what it installs: modes, units, PREFIX rewriting, and that an existing
# configuration survives a second run. No root or systemd needed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
mode() { stat -c %a "$1"; }

mkdir -p "$tmp/bin"
for b in cloudgateway edgegateway egwctl; do printf '#!/bin/sh\necho %s\n' "$b" >"$tmp/bin/$b"; chmod 0755 "$tmp/bin/$b"; done

# 1. Missing binaries are refused.
if DESTDIR=$tmp/none BINDIR=$tmp/empty "$here/install.sh" >/dev/null 2>&1; then fail "install without binaries succeeded"; fi

# 2. A staged install.
d=$tmp/root
DESTDIR=$d BINDIR=$tmp/bin "$here/install.sh" >/dev/null
for b in cloudgateway edgegateway egwctl; do
	[[ $(mode "$d/usr/local/bin/$b") == 755 ]] || fail "$b mode $(mode "$d/usr/local/bin/$b")"
done
for u in egw-cloudgateway.service egw-edgegateway.service; do
	[[ $(mode "$d/etc/systemd/system/$u") == 644 ]] || fail "$u mode"
	cmp -s "$here/systemd/$u" "$d/etc/systemd/system/$u" || fail "$u differs from the source"
done
[[ $(mode "$d/etc/egw") == 755 ]] || fail "/etc/egw mode $(mode "$d/etc/egw")"
[[ $(mode "$d/var/lib/egw") == 700 ]] || fail "/var/lib/egw mode $(mode "$d/var/lib/egw")"
grep -q 'net.ipv4.ip_forward = 1' "$d/etc/sysctl.d/90-egw.conf" || fail "sysctl.d file"
[[ -f $d/etc/egw/edgegateway.yaml.example ]] || fail "example config missing"

# 3. An existing config is never overwritten; a too-wide state dir is tightened.
echo "name: mine" >"$d/etc/egw/edgegateway.yaml"
chmod 0755 "$d/var/lib/egw"
out=$(DESTDIR=$d BINDIR=$tmp/bin "$here/install.sh")
[[ $(cat "$d/etc/egw/edgegateway.yaml") == "name: mine" ]] || fail "existing config overwritten"
grep -q "kept existing $d/etc/egw/edgegateway.yaml" <<<"$out" || fail "no 'kept existing' message"
[[ $(mode "$d/var/lib/egw") == 700 ]] || fail "state dir not tightened"

# 4. PREFIX moves the binaries and the units follow.
p=$tmp/prefix
DESTDIR=$p PREFIX=/opt/egw BINDIR=$tmp/bin "$here/install.sh" >/dev/null
[[ -x $p/opt/egw/bin/egwctl ]] || fail "PREFIX binaries"
grep -q 'ExecStart=/opt/egw/bin/edgegateway --config /etc/egw/edgegateway.yaml' "$p/etc/systemd/system/egw-edgegateway.service" || fail "PREFIX unit"

# 5. The units say what the design asks for.
for u in "$here"/systemd/*.service; do
	for want in 'After=network-online.target' 'Wants=network-online.target' 'Restart=on-failure' \
		'StateDirectory=egw' 'StateDirectoryMode=0700' 'ConfigurationDirectory=egw' \
		'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE' 'AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE' \
		'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ReadWritePaths=/run/egw /var/run/wireguard' 'ExecReload=/bin/kill -HUP $MAINPID'; do
		grep -qxF "$want" "$u" || fail "$(basename "$u") lacks $want"
	done
done
if command -v systemd-analyze >/dev/null 2>&1; then
	# Only the not-yet-installed binaries may be reported.
	bad=$(systemd-analyze verify --man=no "$here"/systemd/*.service 2>&1 | grep -v 'is not executable: No such file' || true)
	[[ -z $bad ]] || fail "systemd-analyze: $bad"
fi
echo "test-install: ok"
