// Package layers states the direction imports take between EGW's packages
// (docs/ARCHITECTURE.md, "Package layout and dependency direction") as data, and its test
// fails when a non-test file imports against it:
//
//	cmd → gateway, controlplane → overlay, dnsd → nat → policy, vpresence → api, internal/*
//
// A package may import only packages of a lower rank (never one of its own rank: gateway
// and controlplane, overlay and dnsd, policy and vpresence stay apart), and egwctl only
// client, api and internal/secret. Test files are free (they may use clienttest, lantest).
package layers

import "strings"

// Module is the module path every package below is relative to.
const Module = "github.com/egw-project/egw"

// Rank of each package (or, ending in "/", of every package under a directory); higher
// ranks import lower ones. The first matching entry wins. A package below a listed one
// (nat/packet below nat) ranks just under it: its parent and its parent's importers may
// use it.
var Rank = []struct {
	Path string
	Rank int
}{
	{"bench", Tools}, {"bench/", Tools}, {"netns-tests", Tools}, {"netns-tests/", Tools}, {"e2e/", Tools},
	{"scripts/", Tools}, // helpers for trying EGW (scripts/etcdmember: a local etcd)
	{"cmd/", 14}, {"client/clienttest", 14},
	{"gateway", 12}, {"controlplane", 12}, {"client", 12},
	{"overlay", 10}, {"dnsd", 10},
	{"nat", 8},
	{"policy", 6}, {"vpresence", 6},
	{"internal/snapidx", 5},
	{"api", 4},
	{"internal/", 0},
}

// Tools is the rank of benchmarks and end-to-end tests: not the product, they may import
// anything, each other included.
const Tools = 100

// Only restricts what some packages may import from the module, beyond their rank.
var Only = map[string][]string{
	"cmd/egwctl": {"client", "api", "internal/secret"},
	"client":     {"api"},
}

// RankOf returns the rank of pkg (relative to Module) and whether it is listed.
func RankOf(pkg string) (int, bool) {
	for _, r := range Rank {
		if pkg == r.Path || (strings.HasSuffix(r.Path, "/") && strings.HasPrefix(pkg, r.Path)) {
			return r.Rank, true
		}
	}
	for _, r := range Rank {
		if !strings.HasSuffix(r.Path, "/") && strings.HasPrefix(pkg, r.Path+"/") {
			return r.Rank - 1, true
		}
	}
	return 0, false
}
