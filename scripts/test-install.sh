#!/usr/bin/env bash
# test-install.sh — stage scripts/install.sh into a temporary DESTDIR with stand-in binaries
# and check what it installs: modes, units, PREFIX rewriting, and that an existing
# configuration survives a second run; rate the units with `systemd-analyze security
# --offline` (at most 2.0 each); and, as root, run both daemons under the units' user,
# capabilities and file-system restrictions in a network and mount namespace of their own
# (scripts/test-install-run.sh).
#
# Environment: EGW_BIN, a directory with the built cloudgateway, edgegateway and egwctl
# (default: built into a temporary directory with go). Without systemd-analyze the score
# check fails: scripts/install-deps.sh installs it. Without root the run check is skipped.
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
		'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ReadWritePaths=/run/egw /var/run/wireguard' 'ExecReload=/bin/kill -HUP $MAINPID' \
		'User=egw' 'Group=egw' 'SystemCallFilter=@system-service' 'LimitNOFILE=4096'; do
		grep -qxF "$want" "$u" || fail "$(basename "$u") lacks $want"
	done
done
command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze missing (scripts/install-deps.sh installs it)"
# Only the not-yet-installed binaries may be reported.
bad=$(systemd-analyze verify --man=no "$here"/systemd/*.service 2>&1 | grep -v 'is not executable: No such file' || true)
[[ -z $bad ]] || fail "systemd-analyze: $bad"

# 6. Exposure score: at most 2.0 for each unit.
for u in "$here"/systemd/*.service; do
	score=$(cd "$tmp" && systemd-analyze security --offline=yes "$u" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[[ -n $score ]] || fail "no exposure score for $(basename "$u")"
	awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "$(basename "$u") exposure $score > 2.0"
	echo "test-install: $(basename "$u") exposure $score"
done

# 7. The daemons work under the units' restrictions.
if [[ $(id -u) -ne 0 ]] || ! command -v setpriv >/dev/null || ! command -v unshare >/dev/null; then
	echo "test-install: not root (or no setpriv/unshare): daemons not run under the units' settings"
else
	bin=${EGW_BIN:-}
	if [[ -z $bin ]]; then
		bin=$tmp/realbin
		(cd "$here/.." && go build -o "$bin/" ./cmd/cloudgateway ./cmd/edgegateway ./cmd/egwctl)
	fi
	chmod 0755 "$tmp"
	unshare --net --mount --propagation private "$here/test-install-run.sh" "$bin" "$tmp/run" ||
		fail "daemons under the units' settings (see above)"
fi
echo "test-install: ok"
