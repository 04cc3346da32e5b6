package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// kindAliases maps every accepted spelling (lower case) to its kind.
var kindAliases = map[string]string{
	"esite": KindESite, "esites": KindESite, "site": KindESite, "sites": KindESite,

	"egateway": KindEGateway, "egateways": KindEGateway, "gateway": KindEGateway,
	"gateways": KindEGateway, "gw": KindEGateway, "gws": KindEGateway,

	"eservice": KindEService, "eservices": KindEService, "service": KindEService,
	"services": KindEService, "svc": KindEService,

	"eserver": KindEServer, "eservers": KindEServer, "server": KindEServer, "servers": KindEServer,

	"epolicy": KindEPolicy, "epolicies": KindEPolicy, "epolicys": KindEPolicy,
	"policy": KindEPolicy, "policies": KindEPolicy,

	"serviceexpose": KindServiceExpose, "serviceexposes": KindServiceExpose,
	"expose": KindServiceExpose, "exposes": KindServiceExpose,

	"virtualpresence": KindVirtualPresence, "virtualpresences": KindVirtualPresence,
	"vp": KindVirtualPresence, "vps": KindVirtualPresence,
}

// plurals are the REST collection names (docs/ARCHITECTURE.md).
var plurals = map[string]string{
	KindESite:           "esites",
	KindEGateway:        "egateways",
	KindEService:        "eservices",
	KindEServer:         "eservers",
	KindEPolicy:         "epolicies",
	KindServiceExpose:   "serviceexposes",
	KindVirtualPresence: "virtualpresences",
}

// ParseKind returns the kind named by s: the seed's spelling in any case, its plural, or a
// short form (site, gw, svc, server, policy, expose, vp, …).
func ParseKind(s string) (string, error) {
	if k, ok := kindAliases[strings.ToLower(strings.TrimSpace(s))]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q (want one of %s)", s, strings.Join(Kinds, ", "))
}

// Plural returns the REST plural of kind ("EPolicy" → "epolicies"). Any spelling ParseKind
// accepts is accepted; an unknown kind gives "".
func Plural(kind string) string {
	k, err := ParseKind(kind)
	if err != nil {
		return ""
	}
	return plurals[k]
}

// New returns a new, empty object of the given kind (any spelling ParseKind accepts) with
// kind and apiVersion set.
func New(kind string) (Object, error) {
	k, err := ParseKind(kind)
	if err != nil {
		return nil, err
	}
	tm := TypeMeta{Kind: k, APIVersion: "v1"}
	switch k {
	case KindESite:
		return &ESite{TypeMeta: tm}, nil
	case KindEGateway:
		return &EGateway{TypeMeta: tm}, nil
	case KindEService:
		return &EService{TypeMeta: tm}, nil
	case KindEServer:
		return &EServer{TypeMeta: tm}, nil
	case KindEPolicy:
		return &EPolicy{TypeMeta: tm}, nil
	case KindServiceExpose:
		return &ServiceExpose{TypeMeta: tm}, nil
	default:
		return &VirtualPresence{TypeMeta: tm}, nil
	}
}

// Key identifies an object across kinds: "Kind/name".
func Key(o Object) string {
	return o.GetKind() + "/" + o.GetMeta().Name
}

// DeepCopy returns a copy of o sharing no memory with it. A nil object gives nil.
func DeepCopy(o Object) Object {
	switch v := o.(type) {
	case *ESite:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		return &c
	case *EGateway:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		return &c
	case *EService:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		return &c
	case *EServer:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		return &c
	case *EPolicy:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		c.AllowedServers = slices.Clone(v.AllowedServers)
		c.AllowedSites = slices.Clone(v.AllowedSites)
		return &c
	case *ServiceExpose:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		c.ESites = slices.Clone(v.ESites)
		c.EPolicys = slices.Clone(v.EPolicys)
		return &c
	case *VirtualPresence:
		if v == nil {
			return nil
		}
		c := *v
		copyCommon(&c.Metadata, &c.Status)
		return &c
	}
	return nil
}

// copyCommon replaces the reference-typed parts of a shallow copy's metadata and status
// with copies.
func copyCommon(m *ObjectMeta, s *Status) {
	m.Labels = maps.Clone(m.Labels)
	m.Annotations = maps.Clone(m.Annotations)
	s.Conditions = slices.Clone(s.Conditions)
}

// Equal reports whether a and b are the same object as a user wrote it: same kind and the
// same fields, ignoring Metadata.ResourceVersion, Metadata.CreationRevision and Status
// (which the control plane sets), an empty versus "v1" apiVersion, and nil versus empty
// lists and maps. Re-applying an object Equal to the stored one changes nothing.
func Equal(a, b Object) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.GetKind() != b.GetKind() {
		return false
	}
	ea, erra := canonicalJSON(a)
	eb, errb := canonicalJSON(b)
	return erra == nil && errb == nil && bytes.Equal(ea, eb)
}

// canonicalJSON encodes the user-written part of o canonically.
func canonicalJSON(o Object) ([]byte, error) {
	c := DeepCopy(o)
	if c == nil {
		return nil, fmt.Errorf("unknown object type %T", o)
	}
	m := c.GetMeta()
	m.ResourceVersion, m.CreationRevision = 0, 0
	*c.GetStatus() = Status{}
	setTypeMeta(c)
	return json.Marshal(c)
}

// typeMeta returns a pointer to o's TypeMeta.
func typeMeta(o Object) *TypeMeta {
	switch v := o.(type) {
	case *ESite:
		return &v.TypeMeta
	case *EGateway:
		return &v.TypeMeta
	case *EService:
		return &v.TypeMeta
	case *EServer:
		return &v.TypeMeta
	case *EPolicy:
		return &v.TypeMeta
	case *ServiceExpose:
		return &v.TypeMeta
	case *VirtualPresence:
		return &v.TypeMeta
	}
	return nil
}

// setTypeMeta fills kind from the Go type and an empty apiVersion with "v1".
func setTypeMeta(o Object) {
	tm := typeMeta(o)
	if tm == nil {
		return
	}
	tm.Kind = o.GetKind()
	if tm.APIVersion == "" {
		tm.APIVersion = "v1"
	}
}
