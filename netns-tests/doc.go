// Package netnstests holds EGW's end-to-end tests: real network namespaces, veth links and
// the real binaries (bin/cloudgateway, bin/edgegateway, bin/egwctl), built on the harness
// package. The tests carry the build tag `netns` and skip unless run as root:
//
//	go test -tags netns -count=1 -v ./netns-tests/...
//
// Tests of the topology itself and of the plain wireguard-go reference run everywhere the
// harness runs; the EGW scenarios (issue 6) skip while the EGW binaries are missing from bin/
// (or $EGW_BIN); the path scenarios (issue 10: NAT boxes in front of the edges, direct
// paths, the hub's ciphertext relay) also skip while the hub exports no
// egw_relay_packets_total, and need nft. TestReplicas (issue 12: a 3-member etcd of
// scripts/etcdmember, two cloud gateway replicas as hubs, two edges, replica and etcd
// members killed) runs with the other EGW scenarios. Every namespace, link, nftables table and process
// is removed at the end of each test, also on failure; TestMain first sweeps namespaces
// left by crashed runs.
package netnstests
