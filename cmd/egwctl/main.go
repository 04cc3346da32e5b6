// Command egwctl is the operator CLI of EGW. It talks to the cloud gateway's admin REST API
// (docs/ARCHITECTURE.md) through package client, over the API's unix socket by default or
// over HTTP(S) with a bearer token, and never imports the control plane or the data plane.
//
// One file per command (as etcdctl does): apply, get, delete, describe, the friendly verbs
// (site/gateway/service/server/policy add, expose, vp list), status, explain and version.
// Output goes through a printer chosen by -o (table, json, yaml). On success egwctl exits 0;
// on failure it prints one line "error: <reason>" on stderr and exits 1. `explain` exits 0
// whatever the verdict unless --exit-code is given (then a denied verdict exits 2).
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
