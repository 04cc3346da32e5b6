package api

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseKind(t *testing.T) {
	tests := map[string][]string{
		KindESite:           {"ESite", "esite", "ESITE", "esites", "site", "Sites", " site "},
		KindEGateway:        {"EGateway", "egateway", "egateways", "gateway", "gateways", "gw", "GW"},
		KindEService:        {"EService", "eservice", "eservices", "service", "services", "svc"},
		KindEServer:         {"EServer", "eserver", "eservers", "server", "servers"},
		KindEPolicy:         {"EPolicy", "epolicy", "epolicies", "policy", "policies", "epolicys"},
		KindServiceExpose:   {"ServiceExpose", "serviceexpose", "serviceexposes", "expose", "exposes"},
		KindVirtualPresence: {"VirtualPresence", "virtualpresence", "virtualpresences", "vp", "vps", "VPs"},
	}
	for want, spellings := range tests {
		for _, s := range spellings {
			got, err := ParseKind(s)
			if err != nil || got != want {
				t.Errorf("ParseKind(%q) = %q, %v; want %q", s, got, err, want)
			}
		}
	}
	for _, s := range []string{"", "pod", "e-site", "esitess", "Gateway/x"} {
		if k, err := ParseKind(s); err == nil {
			t.Errorf("ParseKind(%q) = %q, want error", s, k)
		}
	}
	_, err := ParseKind("pod")
	const want = `unknown kind "pod" (want one of ESite, EGateway, EService, EServer, EPolicy, ServiceExpose, VirtualPresence)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v", err)
	}
}

func TestPluralNewKey(t *testing.T) {
	want := map[string]string{
		KindESite: "esites", KindEGateway: "egateways", KindEService: "eservices", KindEServer: "eservers",
		KindEPolicy: "epolicies", KindServiceExpose: "serviceexposes", KindVirtualPresence: "virtualpresences",
	}
	if len(Kinds) != 7 {
		t.Fatalf("Kinds has %d entries", len(Kinds))
	}
	for _, k := range Kinds {
		if got := Plural(k); got != want[k] {
			t.Errorf("Plural(%s) = %q, want %q", k, got, want[k])
		}
		// Every plural parses back to its kind.
		if back, err := ParseKind(Plural(k)); err != nil || back != k {
			t.Errorf("ParseKind(Plural(%s)) = %q, %v", k, back, err)
		}
		o, err := New(strings.ToLower(k))
		if err != nil {
			t.Fatal(err)
		}
		if o.GetKind() != k || typeMeta(o).Kind != k || typeMeta(o).APIVersion != "v1" {
			t.Errorf("New(%s) = %#v", k, o)
		}
		o.GetMeta().Name = "x"
		if Key(o) != k+"/x" {
			t.Errorf("Key = %q", Key(o))
		}
	}
	if Plural("pod") != "" {
		t.Error("Plural(pod) not empty")
	}
	if Plural("svc") != "eservices" {
		t.Error("Plural(svc)")
	}
	if _, err := New("pod"); err == nil {
		t.Error("New(pod) succeeded")
	}
}

func TestDeepCopy(t *testing.T) {
	for _, o := range validObjects() {
		o.GetMeta().Labels = map[string]string{"a": "b"}
		o.GetMeta().Annotations = map[string]string{"c": "d"}
		o.GetStatus().Conditions = []Condition{{Type: "ResolvedRefs", Status: "True"}}
		c := DeepCopy(o)
		if !reflect.DeepEqual(c, o) {
			t.Fatalf("copy differs: %#v", c)
		}
		// Mutating the copy's reference fields leaves the original alone.
		c.GetMeta().Labels["a"] = "changed"
		c.GetMeta().Annotations["c"] = "changed"
		c.GetStatus().Conditions[0].Status = "False"
		switch c := c.(type) {
		case *EPolicy:
			c.AllowedServers[0], c.AllowedSites[0] = "changed", "changed"
		case *ServiceExpose:
			c.ESites[0], c.EPolicys[0] = "changed", "changed"
		}
		if reflect.DeepEqual(c, o) {
			t.Fatalf("%s: copy shares memory", Key(o))
		}
		if o.GetMeta().Labels["a"] != "b" || o.GetMeta().Annotations["c"] != "d" || o.GetStatus().Conditions[0].Status != "True" {
			t.Fatalf("%s: original changed", Key(o))
		}
		if !reflect.DeepEqual(o, validObjectWithExtras(Key(o))) {
			t.Fatalf("%s: original list changed: %#v", Key(o), o)
		}
	}
	if DeepCopy(nil) != nil || DeepCopy((*ESite)(nil)) != nil {
		t.Error("DeepCopy of nil not nil")
	}
}

func validObjectWithExtras(key string) Object {
	for _, o := range validObjects() {
		if Key(o) == key {
			o.GetMeta().Labels = map[string]string{"a": "b"}
			o.GetMeta().Annotations = map[string]string{"c": "d"}
			o.GetStatus().Conditions = []Condition{{Type: "ResolvedRefs", Status: "True"}}
			return o
		}
	}
	return nil
}

func TestEqual(t *testing.T) {
	base := validObjects()[KindServiceExpose].(*ServiceExpose)
	mod := func(f func(s *ServiceExpose)) Object {
		c := DeepCopy(base).(*ServiceExpose)
		f(c)
		return c
	}
	tests := []struct {
		name string
		b    Object
		want bool
	}{
		{"same", mod(func(*ServiceExpose) {}), true},
		{"resourceVersion", mod(func(s *ServiceExpose) { s.Metadata.ResourceVersion = 9 }), true},
		{"creationRevision", mod(func(s *ServiceExpose) { s.Metadata.CreationRevision = 3 }), true},
		{"status", mod(func(s *ServiceExpose) { s.Status.OverlayIP = "100.64.0.9" }), true},
		{"empty apiVersion", mod(func(s *ServiceExpose) { s.APIVersion = "" }), true},
		{"empty kind", mod(func(s *ServiceExpose) { s.Kind = "" }), true},
		{"eSites emptied", mod(func(s *ServiceExpose) { s.ESites = []string{} }), false},
		{"dnsName", mod(func(s *ServiceExpose) { s.DNSName = "other.test.com" }), false},
		{"eSites order", mod(func(s *ServiceExpose) { s.ESites = []string{"b", "a"} }), false},
		{"policy added", mod(func(s *ServiceExpose) { s.EPolicys = append(s.EPolicys, "p2") }), false},
		{"label", mod(func(s *ServiceExpose) { s.Metadata.Labels = map[string]string{"x": "y"} }), false},
		{"name", mod(func(s *ServiceExpose) { s.Metadata.Name = "other" }), false},
		{"other kind", &EService{Metadata: base.Metadata}, false},
	}
	for _, tc := range tests {
		if got := Equal(base, tc.b); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
		if got := Equal(tc.b, base); got != tc.want {
			t.Errorf("%s: Equal not symmetric", tc.name)
		}
	}
	// nil and empty collections compare equal.
	a := &EPolicy{Metadata: ObjectMeta{Name: "p", Labels: map[string]string{}}, AllowedSites: []string{}}
	b := &EPolicy{Metadata: ObjectMeta{Name: "p"}}
	if !Equal(a, b) {
		t.Error("nil and empty collections differ")
	}
	if !Equal(nil, nil) || Equal(a, nil) || Equal(nil, a) {
		t.Error("nil handling")
	}
}
