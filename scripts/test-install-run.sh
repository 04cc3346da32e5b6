#!/usr/bin/env bash
# test-install-run.sh BIN DIR — run by scripts/test-install.sh inside `unshare --net --mount`:
# start cloudgateway and an edgegateway registered with it the way the units run them — as
# an unprivileged user (uid 64999, an id with no account, stands for egw) with only
# CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (bounding, inheritable and ambient), no new
# privileges, LimitNOFILE=4096, the root file system read-only but for the state directory,
# /run/egw and /run/wireguard (ProtectSystem=strict, ReadWritePaths) — and check that they
# work: API socket, TUN devices, UAPI socket, DNS on port 53, the edge registered, and a
# second gateway with a device name in use refused with a message saying so. The
# system call filter is left to systemd (test-install.sh checks the units' score). Every
# process is stopped on exit; the namespaces vanish with this script.
set -euo pipefail
bin=$1 run=$2
uid=64999

logs=()
fail() {
	echo "FAIL: $*" >&2
	for f in "${logs[@]}"; do [[ -f $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
	exit 1
}
[[ -n $bin && -n $run && $$ -ne 1 ]] || fail "usage: test-install-run.sh BIN DIR (inside unshare --net --mount)"
[[ $(readlink /proc/self/ns/net) != $(readlink /proc/1/ns/net) ]] || fail "not in a network namespace of its own"

mkdir -p "$run/state/cloud" "$run/state/edge" "$run/etc"
chmod 0755 "$run" "$run/etc"
chown -R $uid:$uid "$run/state"
chmod 0700 "$run/state/cloud" "$run/state/edge"
cat >"$run/etc/cloudgateway.yaml" <<EOF
name: hub
site: cloud
stateDir: $run/state/cloud
listenPort: 51820
endpoint: 127.0.0.1:51820
vpCIDR: 192.168.9.0/24
apiSocket: /run/egw/api.sock
tun: {name: egw-hub}
metrics: {listen: ""}
EOF
chmod 0644 "$run/etc/cloudgateway.yaml"

ip link set lo up
echo 1 >/proc/sys/net/ipv4/ip_forward # what /etc/sysctl.d/90-egw.conf does at boot
# ProtectSystem=strict + ReadWritePaths: everything read-only but these (and DIR, which
# holds the state directories, and the logs).
mount --bind "$run" "$run"
mount -t tmpfs -o mode=0755 tmpfs /run
# The kernel creates /dev/net/tun with mode 0666 (opening it grants nothing: creating a
# device needs CAP_NET_ADMIN); some containers tighten it to 0600. Restore the default
# inside this mount namespace.
if [[ $(stat -c %a /dev/net/tun) != 666 ]]; then
	mount -t tmpfs -o mode=0755 tmpfs /dev/net
	mknod -m 0666 /dev/net/tun c 10 200
fi
mkdir -p /run/egw /run/wireguard
chown $uid:$uid /run/egw /run/wireguard
mount -o remount,bind,ro /

confined=(setpriv --reuid=$uid --regid=$uid --clear-groups
	--bounding-set=-all,+net_admin,+net_bind_service
	--inh-caps=-all,+net_admin,+net_bind_service --ambient-caps=-all,+net_admin,+net_bind_service
	--no-new-privs --)
confine() (
	ulimit -n 4096
	exec "${confined[@]}" "$@"
)
# start LOG CMD... runs CMD confined in the background; its pid is the daemon's.
start() {
	local log=$1
	shift
	logs+=("$log")
	(ulimit -n 4096 && exec "${confined[@]}" "$@" >"$log" 2>&1) &
	pids+=($!)
}
wait_for() {
	for _ in $(seq 100); do
		if eval "$1" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	return 1
}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait' EXIT

start "$run/cloud.log" "$bin/cloudgateway" --config "$run/etc/cloudgateway.yaml"
wait_for '[[ -S /run/egw/api.sock ]]' || fail "cloudgateway: no API socket"
wait_for 'ip link show egw-hub' || fail "cloudgateway: no TUN device egw-hub"
wait_for '[[ -S /run/wireguard/egw-hub.sock ]]' || fail "cloudgateway: no UAPI socket"
grep -Eq "^Uid:\s+$uid\s" /proc/${pids[0]}/status || fail "cloudgateway does not run as $uid: $(grep -E '^(Name|Uid)' /proc/${pids[0]}/status)"
grep -Eq "^Max open files\s+4096\s" /proc/${pids[0]}/limits || fail "cloudgateway's descriptor limit: $(grep 'open files' /proc/${pids[0]}/limits)"
# CAP_NET_BIND_SERVICE is bit 10, CAP_NET_ADMIN bit 12.
grep -q '^CapEff:\s*0000000000001400$' /proc/${pids[0]}/status &&
	grep -q '^CapBnd:\s*0000000000001400$' /proc/${pids[0]}/status || fail "cloudgateway capabilities: $(grep CapEff /proc/${pids[0]}/status)"
if confine touch /usr/.egw-write-test 2>/dev/null; then fail "the root file system is writable"; fi

egwctl() { "$bin/egwctl" --socket /run/egw/api.sock "$@"; }
key=$(confine "$bin/edgegateway" pubkey --key-file "$run/state/edge/private.key")
egwctl gateway add edge-t --site site-t --vp-cidr 192.168.50.0/24 --public-key "$key" >"$run/etc/edge.yaml" 2>"$run/egwctl.log" ||
	{ logs+=("$run/egwctl.log"); fail "egwctl gateway add"; }
sed -i "s#/var/lib/egw#$run/state/edge#g" "$run/etc/edge.yaml"
chmod 0644 "$run/etc/edge.yaml"
edgetun=$(sed -n '/^tun:/,/^[a-z]/s/^ *name: *\(.*\)$/\1/p' "$run/etc/edge.yaml")
[[ -n $edgetun && $edgetun != egw-hub ]] || fail "the edge config's tun.name is '$edgetun'"

start "$run/edge.log" "$bin/edgegateway" --config "$run/etc/edge.yaml"
wait_for "ip link show $edgetun" || fail "edgegateway: no TUN device $edgetun"
# DNS on port 53 of the VP CIDR's first address needs CAP_NET_BIND_SERVICE.
wait_for 'ss -Hlun | grep -q "192.168.50.1:53 "' || fail "edgegateway: DNS not listening on 192.168.50.1:53"
wait_for 'egwctl get egateways | grep -q edge-t' || fail "egwctl get egateways"
# A second gateway with the same tun.name in another network namespace (sharing
# /run/wireguard, as gateways on one host do) refuses to start and says what to change.
if out=$(unshare --net -- "${confined[@]}" "$bin/edgegateway" --config "$run/etc/edge.yaml" 2>&1); then
	fail "a second gateway with tun.name $edgetun started"
fi
grep -q "give this gateway its own tun.name" <<<"$out" || fail "second gateway with tun.name $edgetun: $out"
echo "test-install: a second gateway with tun.name $edgetun: $(tail -1 <<<"$out")"
sleep 1
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a daemon exited"; done
echo "test-install: both daemons run as uid $uid with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only, on a read-only root"
