#!/usr/bin/env bash
# demo.sh — EGW on one machine, narrated (`make demo`; needs root).
#
# Builds the topology of docs/ARCHITECTURE.md ("Topology") in network namespaces, runs the
# real daemons, applies the objects with egwctl, and walks through: DNS at site A, a request
# that succeeds (the service at site B sees a presence IP), one that is denied, `egwctl
# status`. Everything is torn down on exit, also on error or Ctrl-C.
#
#                        ┌──────── wan: bridge, underlay 203.0.113.0/24 ────────┐
#                   .1 ──┘                       .2 │                      .3 └── 
#          [cloudgateway: cloud]         [edgegateway: edge-a]       [edgegateway: edge-b]
#           vp 192.168.9.0/24             vp 192.168.0.0/24           vp 172.16.5.0/24
#           LAN 10.1.0.0/24               LAN 10.0.0.0/24             LAN 10.0.0.0/24  <- same!
#                                          a20 10.0.0.20 (allowed)     b10 10.0.0.10:8080 (web)
#                                          a21 10.0.0.21 (denied)
#
# Environment: BIN (default <repo>/bin; needs cloudgateway, edgegateway, egwctl, and builds
# responder there if missing), DEMO_PAUSE=1 to wait for Enter between steps, KEEP=1 to keep
# the topology until Enter is pressed at the end.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
BIN=${BIN:-$repo/bin}
# Namespace names follow the harness ("egw<pid>x<tag>-<name>"), so a crashed demo's leftovers
# are swept by the next netns test or bench run.
P="egw$$xdemo"
work=$(mktemp -d /tmp/egw-demo.XXXXXX)
nss=()
exec 3>&1

bold=$'\e[1m' green=$'\e[32m' blue=$'\e[34m' red=$'\e[31m' off=$'\e[0m'
[[ -t 1 ]] || bold='' green='' blue='' red='' off=''

say() { printf '\n%s==> %s%s\n' "$bold$green" "$*" "$off" >&3; [[ ${DEMO_PAUSE:-0} == 1 ]] && read -r -p "    (Enter) " _ || true; }
show() { printf '%s    $ %s%s\n' "$blue" "$*" "$off" >&3; "$@"; }
fail() { printf '%sdemo: %s%s\n' "$red" "$*" "$off" >&2; exit 1; }
n() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }
# in NS CMD...: show a command run inside a namespace.
inns() { local ns=$1; shift; printf '%s    [%s] $ %s%s\n' "$blue" "$ns" "$*" "$off" >&3; ip netns exec "$P-$ns" "$@"; }
# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s, bounded; never a fixed sleep. Gives
# up at once if a daemon started by this script has exited.
wait_for() {
	local secs=$1 what=$2; shift 2
	local end=$((SECONDS + secs)) pidfile
	until "$@" >/dev/null 2>&1; do
		for pidfile in "$work"/*.pid; do
			[[ -f $pidfile ]] || continue
			kill -0 "$(cat "$pidfile")" 2>/dev/null ||
				{ printf '%s%s exited while waiting for %s%s\n' "$red" "$(basename "$pidfile" .pid)" "$what" "$off" >&2; return 1; }
		done
		((SECONDS < end)) || { printf '%stimed out after %ss waiting for %s%s\n' "$red" "$secs" "$what" "$off" >&2; return 1; }
		sleep 0.1
	done
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [[ ${KEEP:-0} == 1 && $rc == 0 ]]; then read -r -p "KEEP=1: topology is up (namespaces $P-*); Enter tears it down " _; fi
	printf '\n%s==> tearing down%s\n' "$bold$green" "$off" >&3
	for pidfile in "$work"/*.pid; do
		[[ -f $pidfile ]] && kill -TERM "$(cat "$pidfile")" 2>/dev/null
	done
	for pidfile in "$work"/*.pid; do
		[[ -f $pidfile ]] || continue
		local pid; pid=$(cat "$pidfile")
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
	for ((i = ${#nss[@]} - 1; i >= 0; i--)); do
		local pids; pids=$(ip netns pids "${nss[$i]}" 2>/dev/null)
		[[ -n $pids ]] && kill -KILL $pids 2>/dev/null
		ip netns del "${nss[$i]}" 2>/dev/null
	done
	if ((rc != 0)) && [[ -d $work ]]; then
		echo "daemon logs (last lines):" >&2
		for f in "$work"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
	fi
	rm -rf "$work"
	echo "removed ${#nss[@]} namespaces"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) -eq 0 ]] || fail "needs root (network namespaces); try: sudo make demo"
"$here/install-deps.sh" --check >/dev/null || "$here/install-deps.sh"
for b in cloudgateway edgegateway egwctl; do
	[[ -x $BIN/$b ]] || fail "$BIN/$b missing: run make build"
done
if [[ ! -x $BIN/responder ]]; then
	(cd "$repo" && go build -o "$BIN/responder" ./netns-tests/responder) || fail "cannot build the responder"
fi

addns() { ip netns add "$P-$1"; nss+=("$P-$1"); ip -n "$P-$1" link set lo up; }
# start NAME NS CMD...: run a daemon in the background, logging to $work/NAME.log.
start() {
	local name=$1 ns=$2; shift 2
	ip netns exec "$P-$ns" "$@" >"$work/$name.log" 2>&1 &
	echo $! >"$work/$name.pid"
}
ctl() { "$BIN/egwctl" --socket "$work/api.sock" "$@"; }
showctl() { printf '%s    $ egwctl %s%s\n' "$blue" "$*" "$off" >&3; ctl "$@"; }

say "Building the topology: an underlay, a cloud site, and two edge sites that BOTH use 10.0.0.0/24"
addns wan
ip -n "$P-wan" link add br0 type bridge && ip -n "$P-wan" link set br0 up
# site  gateway-ns  key  underlay        LAN gw       VP CIDR          hosts (name:ip)
sites=(
	"cloud  gwc c 203.0.113.1 10.1.0.1 192.168.9.0/24 c10:10.1.0.10"
	"site-a gwa a 203.0.113.2 10.0.0.1 192.168.0.0/24 a20:10.0.0.20 a21:10.0.0.21"
	"site-b gwb b 203.0.113.3 10.0.0.1 172.16.5.0/24 b10:10.0.0.10"
)
for line in "${sites[@]}"; do
	read -r site gw key ul lan vp hosts <<<"$line"
	addns "$gw"
	ip -n "$P-wan" link add "u-$key" type veth peer name wan0 netns "$P-$gw"
	ip -n "$P-wan" link set "u-$key" master br0 up
	ip -n "$P-$gw" addr add "$ul/24" dev wan0 && ip -n "$P-$gw" link set wan0 up
	ip -n "$P-$gw" link add lan0 type bridge && ip -n "$P-$gw" addr add "$lan/24" dev lan0 && ip -n "$P-$gw" link set lan0 up
	n "$gw" sysctl -q -w net.ipv4.ip_forward=1
	for h in $hosts; do
		hn=${h%%:*} hip=${h#*:}
		addns "$hn"
		ip -n "$P-$gw" link add "h-$hn" type veth peer name eth0 netns "$P-$hn"
		ip -n "$P-$gw" link set "h-$hn" master lan0 up
		ip -n "$P-$hn" addr add "$hip/24" dev eth0 && ip -n "$P-$hn" link set eth0 up
		ip -n "$P-$hn" route add "$vp" via "$lan" # the one route a site needs
	done
	echo "    $site: gateway $gw (underlay $ul, LAN $lan/24, VP $vp), hosts: $hosts"
done
inns a20 ip route
echo "    Site A and site B overlap: a20 cannot reach site B's 10.0.0.10 directly:"
if inns a20 ping -c1 -W1 -q 10.0.0.10 >/dev/null 2>&1; then fail "site A reached 10.0.0.10"; else echo "    (no answer, as it should be)"; fi

say "A web service at site B (10.0.0.10:8080)"
start web-b10 b10 "$BIN/responder" -name b10 -http :8080 -tcp "" -udp ""
wait_for 10 "the web service" n gwb bash -c 'exec 3<>/dev/tcp/10.0.0.10/8080'

say "Starting the cloud gateway (control plane + hub) in the cloud site"
mkdir -m 0700 -p "$work/cloud" "$work/edge-a" "$work/edge-b"
cat >"$work/cloud/cloudgateway.yaml" <<YAML
name: cloud
site: cloud
stateDir: $work/cloud
privateKeyFile: $work/cloud/private.key
listenPort: 51820
endpoint: 203.0.113.1:51820
overlayCIDR: 100.64.0.0/10
overlayPrefixLen: 22
vpCIDR: 192.168.9.0/24
apiSocket: $work/api.sock
syncPort: 7443
dataplane: true
tun: {name: vpdemoc, mtu: 1420, driver: wgtun}
dns: {enabled: true, siteNetworks: [10.1.0.0/24], policyAware: true, ttl: 5s, zone: egw.local.}
metrics: {listen: 127.0.0.1:9469}
nat: {rejectDenied: true, leaseIdle: 5m, leaseQuiet: 2m}
YAML
chmod 0600 "$work/cloud/cloudgateway.yaml"
show cat "$work/cloud/cloudgateway.yaml" | sed 's/^/      /'
start cloud gwc "$BIN/cloudgateway" --config "$work/cloud/cloudgateway.yaml"
wait_for 30 "the cloud API" ctl get esites

say "Registering the edge gateways: each has a WireGuard key; egwctl prints its config"
for line in "site-a edge-a gwa 192.168.0.0/24 vpdemoa" "site-b edge-b gwb 172.16.5.0/24 vpdemob"; do
	read -r site gw ns vp tun <<<"$line"
	(umask 077 && wg genkey >"$work/$gw/private.key")
	pub=$(wg pubkey <"$work/$gw/private.key")
	showctl site add "$site"
	showctl gateway add "$gw" --site "$site" --vp-cidr "$vp" --public-key "$pub" --output-file "$work/$gw/generated.yaml"
	# The printed config is ready for /etc/egw/edgegateway.yaml and already names the device
	# after the gateway (egw-edge-a); on this one machine each edge also gets its own state
	# directory, and the demo gives the devices its own names.
	sed -e "s#^stateDir: .*#stateDir: $work/$gw#" \
		-e "s#^privateKeyFile: .*#privateKeyFile: $work/$gw/private.key#" \
		-e "s#^\( *\)name: egw-$gw\$#\1name: $tun#" \
		-e "s#^\( *\)siteNetworks: .*#\1siteNetworks: [10.0.0.0/24]#" \
		"$work/$gw/generated.yaml" >"$work/$gw/edgegateway.yaml"
	grep -q "name: $tun" "$work/$gw/edgegateway.yaml" || fail "could not set the device name in $gw's config"
	chmod 0600 "$work/$gw/edgegateway.yaml"
	if [[ $gw == edge-a ]]; then
		echo "    the config egwctl printed for edge-a (device name and paths adapted to this machine):"
		sed 's/^/      /' "$work/$gw/edgegateway.yaml"
	fi
	start "$gw" "$ns" "$BIN/edgegateway" --config "$work/$gw/edgegateway.yaml"
done
for line in "gwa vpdemoa" "gwb vpdemob"; do
	read -r ns tun <<<"$line"
	wait_for 60 "$ns's WireGuard handshake" bash -c "ip netns exec $P-$ns wg show $tun latest-handshakes | awk '\$2 == 0 {exit 1} END {exit NR == 0}'"
	inns "$ns" wg show "$tun" | sed 's/^/      /'
done

say "Applying the objects: client a20 may use the web service of site B; a21 may not"
cat >"$work/objects.yaml" <<'YAML'
kind: EServer
apiVersion: v1
eServerName: client-a20
ip: 10.0.0.20
eSiteName: site-a
---
kind: EService
apiVersion: v1
metadata: {name: web-b}
protocol: TCP
port: 8080
ip: 10.0.0.10
domainName: web-b
eSiteName: site-b
---
kind: EPolicy
apiVersion: v1
metadata: {name: allow-a20}
allowedServers: [client-a20]
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: web-b}
eServiceName: web-b
dnsName: url1.test.com
eSites: [site-a]
ePolicys: [allow-a20]
YAML
sed 's/^/      /' "$work/objects.yaml"
showctl apply -f "$work/objects.yaml"
showctl get virtualpresences

say "DNS at site A: url1.test.com is a VIP from site A's own VP CIDR (gateway A answers on 192.168.0.1)"
wait_for 30 "url1.test.com at site A" bash -c "ip netns exec $P-a20 dig +short @192.168.0.1 url1.test.com | grep -q ."
vip=$(n a20 dig +short @192.168.0.1 url1.test.com | head -n1)
inns a20 dig +noall +answer @192.168.0.1 url1.test.com

say "a20 asks http://url1.test.com:8080/ — the service at site B answers and sees a presence IP of site B"
wait_for 30 "the service through the VIP" n a20 curl -sf --max-time 2 "http://$vip:8080/"
inns a20 curl -s --max-time 5 --resolve "url1.test.com:8080:$vip" http://url1.test.com:8080/

say "a21 is allowed by no policy: its name does not resolve and its connection is refused"
inns a21 dig +noall +comments @192.168.0.1 url1.test.com | grep -E 'status|ANSWER:' || true
if inns a21 curl -sS --max-time 3 "http://$vip:8080/"; then fail "a21 got through"; else echo "    (denied, as it should be)"; fi
showctl explain --site site-a --src 10.0.0.21 --to url1.test.com || true

say "egwctl status: every gateway, its handshake, traffic, applied revision, leases and drops"
# Edges report every 5 s: wait (bounded) until edge-a's report shows a21's denied packet.
wait_for 15 "edge-a's status report" sh -c "'$BIN/egwctl' --socket '$work/api.sock' status -o json | grep -q denied-client" || true
showctl status

say "Done. Everything is removed on exit."
