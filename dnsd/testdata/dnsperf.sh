#!/bin/sh
# Measure dnsd with dnsperf (Debian package dnsperf) on loopback.
#
#   sh dnsd/testdata/dnsperf.sh            # from the repository root
#
# Builds the dnsd test binary, starts its helper server (TestHelperDNSServer: the test
# snapshot on 127.0.0.1:<free port>, 127.0.0.0/8 as the site network, no upstream), and
# runs dnsperf for 10 s each with 64 clients, 2 threads and 500 queries outstanding: first
# a local name (web.egw.local A -> NOERROR), then a refused one (www.example.com A). It
# prints dnsperf's summary and the server process's CPU time.
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/dnsd.test" ./dnsd
printf 'web.egw.local A\n' > "$dir/local.txt"
printf 'www.example.com A\n' > "$dir/refused.txt"
mkfifo "$dir/in"
EGW_DNSD_HELPER=1 "$dir/dnsd.test" -test.run '^TestHelperDNSServer$' < "$dir/in" > "$dir/out" 2>&1 &
pid=$!
exec 3> "$dir/in" # holds the server's stdin open; closing it stops the server
for _ in $(seq 100); do grep -q ADDR "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's/^ADDR //p' "$dir/out")
host=${addr%:*}
port=${addr##*:}
for f in local refused; do
	echo "== $f"
	t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
	dnsperf -s "$host" -p "$port" -d "$dir/$f.txt" -l 10 -c 64 -T 2 -q 500 2>&1 |
		grep -E 'Queries (sent|completed|lost)|Response codes|Queries per second|Latency'
	t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
	echo "server CPU: $(((t1 - t0) * 10)) ms"
done
exec 3>&-
wait "$pid"
