package controlplane

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/egw-project/egw/api"
)

var (
	addrType   = reflect.TypeFor[netip.Addr]()
	prefixType = reflect.TypeFor[netip.Prefix]()
	apType     = reflect.TypeFor[netip.AddrPort]()
)

// fill sets every leaf under v to a distinct non-zero value and every slice to one
// element; n numbers the leaves.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch {
	case v.Type() == addrType:
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{10, 1, byte(*n >> 8), byte(*n)})))
		return
	case v.Type() == prefixType:
		v.Set(reflect.ValueOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(*n), 0}), 24)))
		return
	case v.Type() == apType:
		v.Set(reflect.ValueOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 3, byte(*n), 1}), uint16(*n))))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint16:
		v.SetUint(uint64(*n))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0), n)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), n)
		}
	default:
		t.Fatalf("api.Snapshot has a %s field (%s): teach fill, mutations and snapHasher about it", v.Kind(), v.Type())
	}
}

// mutations returns, for every leaf and slice under v, a name and a function that
// changes it in a copy reached by the same path.
func mutations(t *testing.T, v reflect.Value, path string, at func(reflect.Value) reflect.Value) map[string]func(reflect.Value) {
	out := map[string]func(reflect.Value){}
	switch {
	case v.Type() == addrType:
		out[path] = func(root reflect.Value) {
			f := at(root)
			f.Set(reflect.ValueOf(f.Interface().(netip.Addr).Next()))
		}
		return out
	case v.Type() == prefixType:
		out[path] = func(root reflect.Value) {
			f := at(root)
			p := f.Interface().(netip.Prefix)
			f.Set(reflect.ValueOf(netip.PrefixFrom(p.Addr(), p.Bits()+1)))
		}
		return out
	case v.Type() == apType:
		out[path+".addr"] = func(root reflect.Value) {
			f := at(root)
			ap := f.Interface().(netip.AddrPort)
			f.Set(reflect.ValueOf(netip.AddrPortFrom(ap.Addr().Next(), ap.Port())))
		}
		out[path+".port"] = func(root reflect.Value) {
			f := at(root)
			ap := f.Interface().(netip.AddrPort)
			f.Set(reflect.ValueOf(netip.AddrPortFrom(ap.Addr(), ap.Port()+1)))
		}
		return out
	}
	switch v.Kind() {
	case reflect.String:
		out[path] = func(root reflect.Value) { f := at(root); f.SetString(f.String() + "x") }
	case reflect.Bool:
		out[path] = func(root reflect.Value) { f := at(root); f.SetBool(!f.Bool()) }
	case reflect.Int, reflect.Int64:
		out[path] = func(root reflect.Value) { f := at(root); f.SetInt(f.Int() + 1) }
	case reflect.Uint16:
		out[path] = func(root reflect.Value) { f := at(root); f.SetUint(f.Uint() + 1) }
	case reflect.Slice:
		out[path+"+"] = func(root reflect.Value) { f := at(root); f.Set(reflect.Append(f, f.Index(0))) }
		out[path+"-"] = func(root reflect.Value) { f := at(root); f.Set(f.Slice(0, 0)) }
		for k, m := range mutations(t, v.Index(0), path+"[0]", func(root reflect.Value) reflect.Value { return at(root).Index(0) }) {
			out[k] = m
		}
	case reflect.Struct:
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			for k, m := range mutations(t, v.Field(i), path+"."+name, func(root reflect.Value) reflect.Value { return at(root).Field(i) }) {
				out[k] = m
			}
		}
	default:
		t.Fatalf("api.Snapshot has a %s field at %s", v.Kind(), path)
	}
	return out
}

// TestSnapshotHashCoversEveryField changes every field of a fully populated snapshot in
// turn: each change but one of Revision must change the digest. A field added to
// api.Snapshot that snapHasher does not cover fails here.
func TestSnapshotHashCoversEveryField(t *testing.T) {
	var full api.Snapshot
	n := 0
	fill(t, reflect.ValueOf(&full).Elem(), &n)
	base, err := json.Marshal(&full)
	if err != nil {
		t.Fatal(err)
	}
	clone := func() *api.Snapshot {
		var c api.Snapshot
		if err := json.Unmarshal(base, &c); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	var h snapHasher
	want := h.sum(&full)
	if got := h.sum(clone()); got != want {
		t.Fatal("a copy hashes differently")
	}
	muts := mutations(t, reflect.ValueOf(full), "Snapshot", func(root reflect.Value) reflect.Value { return root })
	if len(muts) < 60 {
		t.Fatalf("only %d mutations: the walk missed fields", len(muts))
	}
	for name, m := range muts {
		c := clone()
		m(reflect.ValueOf(c).Elem())
		changedJSON, _ := json.Marshal(c)
		if string(changedJSON) == string(base) {
			t.Fatalf("%s: the mutation changed nothing", name)
		}
		got := h.sum(c)
		if name == "Snapshot.Revision" {
			if got != want {
				t.Error("the digest depends on Revision")
			}
			continue
		}
		if got == want {
			t.Errorf("changing %s does not change the digest: snapHasher misses it", name)
		}
	}
}

// TestSnapshotHashAgreesWithJSON: on compiled snapshots, equal digests go with equal
// JSON encodings (Revision aside) and different ones with different encodings.
func TestSnapshotHashAgreesWithJSON(t *testing.T) {
	var snaps []*api.Snapshot
	for _, policies := range []string{`[]`, `["p1"]`, `["p2"]`} {
		objs := decode(t, world+`{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","b1"]}
			{"kind":"EPolicy","metadata":{"name":"p2"},"allowedSites":["site-a"]}`+expose(policies))
		for _, s := range Compile(objs, worldIPAM, testConfig()) {
			snaps = append(snaps, s)
		}
	}
	var h snapHasher
	for _, a := range snaps {
		for _, b := range snaps {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if (h.sum(a) == h.sum(b)) != (string(ja) == string(jb)) {
				t.Errorf("%s vs %s: digests equal %v, JSON equal %v", a.Gateway, b.Gateway, h.sum(a) == h.sum(b), string(ja) == string(jb))
			}
		}
	}
}
