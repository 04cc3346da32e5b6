// Package controlplane is EGW's cloud-side controller: the object store (an embedded bbolt
// file, or etcd shared by several cloud gateway replicas, behind the small Backend interface), cross-object validation, IPAM (overlay prefixes
// of gateways, overlay addresses of exposed services, VIPs of virtual presences), the
// compiler that turns the objects into one api.Snapshot per gateway, the admin REST API
// (docs/ARCHITECTURE.md) and the edge sync server.
//
// The Store keeps, beside the Backend, the whole state decoded in memory with indexes
// from every object to what names it (model). Every write is one transaction of the
// Backend: the requested objects are validated one by one (api.Validate) and, against the
// others, only where a rule involves what the write touches (validateDelta); the
// allocations the write concerns are reconciled (reconcileDelta: overlay prefixes, ov(S),
// managed VirtualPresences); only then are the changed objects, allocations and the new
// global revision written together. A rejected write stores nothing and leaves the model
// as it was.
//
// Compile is a pure function of the objects, the IPAM state and the Config; the Server
// compiles each gateway's snapshot from the neighbourhood of its site only, and after a
// write only the sites the write concerns (refresh.go; a random-write test checks that
// this equals Compile of the whole store). It keeps, per gateway, the revision at which
// that gateway's snapshot last changed, so a write that does not concern a gateway does
// not wake it. Refreshes run one at a time and compare (by a digest per gateway) without
// holding the lock readers take, then swap the changed snapshots in; each gateway has its
// own wake-up channel, so a change wakes only the long polls of the gateways it concerns.
// NewServer loads the store and compiles the first snapshots in the background (Ready).
//
// An edge's snapshot lists (Snapshot.Gateways) only itself, the hub and the gateways of
// the sites its hosted services are exposed to, whatever the policies say: the only
// overlay sources it has to tell apart. The hub's lists every gateway.
//
// The store has a random ID, made once and kept in the file (Store.ID); every snapshot
// carries it (api.Snapshot.StoreID). A sync poll (and Server.Watch) answers as soon as the
// gateway's snapshot revision differs from the caller's in either direction, so an edge
// that holds revision 900 of a store that was since reset gets the new store's revision 40
// at once, and tells from the StoreID that the lower revision is legitimate. One gateway
// may have at most Options.MaxPollsPerGateway polls waiting; a further one ends the oldest.
package controlplane
