#!/usr/bin/env bash
# etcd-local.sh — a local etcd for trying several cloud gateways on one machine.
#
#   scripts/etcd-local.sh            one member: clients on http://127.0.0.1:2379
#   scripts/etcd-local.sh 3          three members: clients on :2379, :12379, :22379
#
# It builds bin/etcdmember from this module (scripts/etcdmember: go.etcd.io/etcd/server/v3,
# the same 3.7 release as EGW's etcd client; Debian's etcd-server package is 3.4) and runs
# the members in the foreground until Ctrl-C, which stops them all. Data lives in
# ETCD_DATA (default /tmp/egw-etcd) and survives a restart; `rm -rf` it for a fresh etcd.
# With three members, `kill <pid>` (printed at start) stops one: writes continue; stop two
# and writes get 503. Run a stopped member's printed command line again to bring it back.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
n=${1:-1}
data=${ETCD_DATA:-/tmp/egw-etcd}
case $n in 1 | 3 | 5) ;; *) echo "etcd-local.sh: want 1, 3 or 5 members, not $n" >&2; exit 2 ;; esac

mkdir -p "$repo/bin" "$data"
(cd "$repo" && go build -o bin/etcdmember ./scripts/etcdmember)

client_port() { if [ "$1" = 0 ]; then echo 2379; else echo $(($1 * 10000 + 2379)); fi; }
peer_port() { if [ "$1" = 0 ]; then echo 2380; else echo $(($1 * 10000 + 2380)); fi; }
cluster=""
endpoints=""
for ((i = 0; i < n; i++)); do
	cluster+="${cluster:+,}m$i=http://127.0.0.1:$(peer_port $i)"
	endpoints+="${endpoints:+,}http://127.0.0.1:$(client_port $i)"
done

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for ((i = 0; i < n; i++)); do
	args=(--name "m$i" --data-dir "$data/m$i" --client-url "http://127.0.0.1:$(client_port $i)"
		--peer-url "http://127.0.0.1:$(peer_port $i)" --initial-cluster "$cluster")
	"$repo/bin/etcdmember" "${args[@]}" &
	pids+=($!)
	echo "member m$i: pid $!: $repo/bin/etcdmember ${args[*]}"
done
echo "etcd endpoints: $endpoints"
echo "  cloudgateway --store-backend etcd --etcd-endpoints $endpoints ..."
wait
