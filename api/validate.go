package api

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem with one field of one object.
type FieldError struct {
	Object  string // "EService/foo"
	Field   string // JSON path: "port", "metadata.name", "eSites[1]"
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Object + ": " + e.Message
	}
	return e.Object + ": " + e.Field + ": " + e.Message
}

// ValidationError lists the problems Validate found: the first MaxReportedErrors of them
// in Errors (never empty), and how many more there were in Omitted, so that an error
// about a large input stays small.
type ValidationError struct {
	Errors  []FieldError
	Omitted int
}

// NewValidationError keeps the first MaxReportedErrors of errs and counts the rest. errs
// must not be empty.
func NewValidationError(errs []FieldError) *ValidationError {
	if len(errs) > MaxReportedErrors {
		return &ValidationError{Errors: errs[:MaxReportedErrors:MaxReportedErrors], Omitted: len(errs) - MaxReportedErrors}
	}
	return &ValidationError{Errors: errs}
}

// Error lists the problems, separated by "; ", and says how many were left out.
func (e *ValidationError) Error() string {
	s := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		s[i] = fe.Error()
	}
	return strings.Join(s, "; ") + e.OmittedText()
}

// OmittedText is "; and N more problems" when problems were left out, else "".
func (e *ValidationError) OmittedText() string {
	if e.Omitted == 0 {
		return ""
	}
	return fmt.Sprintf("; and %d more problems", e.Omitted)
}

// validator collects field errors of one object.
type validator struct {
	obj  string
	errs []FieldError
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Object: v.obj, Field: field, Message: fmt.Sprintf(format, args...)})
}

// check records err (if any) against field.
func (v *validator) check(field string, err error) {
	if err != nil {
		v.add(field, "%s", err.Error())
	}
}

// required checks a required name-valued field.
func (v *validator) name(field, s string, required bool) {
	if s == "" {
		if required {
			v.add(field, "required")
		}
		return
	}
	v.check(field, CheckName(s))
}

// names checks a list of names: at most MaxListLen, each a valid name, none repeated
// (names compare case-insensitively, as CheckName says).
func (v *validator) names(field string, list []string) {
	if len(list) > MaxListLen {
		v.add(field, "has %d entries; at most %d are allowed", len(list), MaxListLen)
		return
	}
	first := make(map[string]int, len(list))
	for i, s := range list {
		f := field + "[" + strconv.Itoa(i) + "]"
		if s == "" {
			v.add(f, "must not be empty")
			continue
		}
		v.check(f, CheckName(s))
		k := strings.ToLower(s)
		if j, dup := first[k]; dup {
			v.add(f, "%q is a duplicate of %s[%d]", s, field, j)
			continue
		}
		first[k] = i
	}
}

// labels checks a map of labels or annotations against MaxLabels, MaxLabelKeyLen and
// MaxLabelValueLen, in key order.
func (v *validator) labels(field string, m map[string]string) {
	if len(m) > MaxLabels {
		v.add(field, "has %d entries; at most %d are allowed", len(m), MaxLabels)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case k == "":
			v.add(field, "a key is empty")
		case len(k) > MaxLabelKeyLen:
			v.add(field, "key %.20q... is %d bytes long; at most %d", k, len(k), MaxLabelKeyLen)
		case len(m[k]) > MaxLabelValueLen:
			v.add(field+"."+k, "is %d bytes long; at most %d", len(m[k]), MaxLabelValueLen)
		}
	}
}

// Validate checks one object in isolation (references are not resolved: they may dangle).
// The error, if any, is a *ValidationError listing every problem found. Validate expects
// a normalized object (see Normalize; Decode normalizes).
func Validate(o Object) error {
	if o == nil || DeepCopy(o) == nil {
		return NewValidationError([]FieldError{{Object: "<nil>", Message: "no object"}})
	}
	v := &validator{obj: Key(o)}
	if tm := typeMeta(o); tm != nil {
		if tm.Kind != "" && tm.Kind != o.GetKind() {
			v.add("kind", "is %q but the object is of kind %s", tm.Kind, o.GetKind())
		}
		if tm.APIVersion != "" && tm.APIVersion != "v1" {
			v.add("apiVersion", "must be v1, got %q", tm.APIVersion)
		}
	}
	v.name("metadata.name", o.GetMeta().Name, true)
	v.labels("metadata.labels", o.GetMeta().Labels)
	v.labels("metadata.annotations", o.GetMeta().Annotations)

	switch o := o.(type) {
	case *ESite:
	case *EGateway:
		if o.IP != "" {
			v.check("ip", checkHostIP(o.IP, false))
		}
		if o.VirtualPresenceIPcidr == "" {
			v.add("virtualPresenceIPcidr", "required")
		} else if p, err := ParseCIDR(o.VirtualPresenceIPcidr); err != nil {
			v.check("virtualPresenceIPcidr", err)
		} else {
			v.check("virtualPresenceIPcidr", checkVPRange(p))
		}
		v.name("eSiteName", o.ESiteName, true)
		if o.PublicKey != "" {
			v.check("publicKey", CheckPublicKey(o.PublicKey))
		}
		if o.Endpoint != "" {
			v.check("endpoint", CheckEndpoint(o.Endpoint))
		}
	case *EService:
		switch o.Protocol {
		case "":
			v.add("protocol", "required (TCP or UDP)")
		case "TCP", "UDP":
		default:
			v.add("protocol", "must be TCP or UDP, got %q", o.Protocol)
		}
		if o.Port < 1 || o.Port > 65535 {
			v.add("port", "must be 1-65535, got %d", o.Port)
		}
		if o.IP == "" {
			v.add("ip", "required")
		} else {
			v.check("ip", checkHostIP(o.IP, true))
		}
		if o.DomainName != "" {
			v.check("domainName", CheckDomainName(o.DomainName, 1))
		}
		v.name("eSiteName", o.ESiteName, true)
	case *EServer:
		if o.EServerName != "" && o.EServerName != o.Metadata.Name {
			v.add("eServerName", "is %q but metadata.name is %q", o.EServerName, o.Metadata.Name)
		}
		if o.IP == "" {
			v.add("ip", "required")
		} else {
			v.check("ip", checkHostIP(o.IP, true))
		}
		v.name("eSiteName", o.ESiteName, true)
	case *EPolicy:
		v.names("allowedServers", o.AllowedServers)
		v.names("allowedSites", o.AllowedSites)
	case *ServiceExpose:
		v.name("eServiceName", o.EServiceName, true)
		if o.DNSName != "" {
			v.check("dnsName", CheckDomainName(o.DNSName, 2))
		}
		v.names("eSites", o.ESites)
		v.names("ePolicys", o.EPolicys)
	case *VirtualPresence:
		if o.VirtualIP != "" {
			v.check("virtualIp", checkHostIP(o.VirtualIP, true))
		}
		v.name("eServiceName", o.EServiceName, true)
		v.name("eSiteName", o.ESiteName, false)
	}
	if len(v.errs) > 0 {
		return NewValidationError(v.errs)
	}
	return nil
}

// ValidateAll validates every object and also rejects two objects with the same Key. The
// error, if any, is a *ValidationError listing the problems of every object (the first
// MaxReportedErrors of them, and how many more).
func ValidateAll(objs []Object) error {
	var all []FieldError
	omitted := 0
	seen := make(map[string]bool, len(objs))
	for _, o := range objs {
		if err := Validate(o); err != nil {
			if ve, ok := err.(*ValidationError); ok {
				all = append(all, ve.Errors...)
				omitted += ve.Omitted
			}
			continue
		}
		k := Key(o)
		if seen[k] {
			all = append(all, FieldError{Object: k, Field: "metadata.name", Message: "duplicate object"})
		}
		seen[k] = true
	}
	if len(all) > 0 {
		ve := NewValidationError(all)
		ve.Omitted += omitted
		return ve
	}
	return nil
}

// Normalize puts a decoded object into its stored form: kind set from its Go type,
// apiVersion "v1" if empty, an EServer's metadata.name filled from eServerName, a
// ServiceExpose without a name named after its eServiceName, and protocols upper case.
// It is idempotent.
func Normalize(o Object) {
	if o == nil || DeepCopy(o) == nil {
		return
	}
	setTypeMeta(o)
	switch o := o.(type) {
	case *EServer:
		if o.Metadata.Name == "" {
			o.Metadata.Name = o.EServerName
		}
	case *ServiceExpose:
		if o.Metadata.Name == "" {
			o.Metadata.Name = o.EServiceName
		}
	case *EService:
		o.Protocol = strings.ToUpper(o.Protocol)
	}
}

// CheckName checks an object name (or a reference to one): the DNS-1123 label grammar
// compared case-insensitively (letters, digits and '-', starting and ending with a letter
// or digit, at most 63 characters). The seed's own samples use names such as
// "TokyoChibaSite1"; see docs/ARCHITECTURE.md, Decisions.
func CheckName(s string) error {
	if !isLabel(s) {
		return fmt.Errorf("invalid name %q: must be 1-63 letters, digits and '-', starting and ending with a letter or digit", s)
	}
	return nil
}

// isLabel reports whether s is a DNS label (case-insensitive DNS-1123).
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// CheckDomainName checks a DNS name of at least minLabels labels: labels as in CheckName,
// at most 253 characters without the optional trailing dot.
func CheckDomainName(s string, minLabels int) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return fmt.Errorf("invalid DNS name %q: empty", s)
	}
	if len(name) > 253 {
		return fmt.Errorf("invalid DNS name %q: longer than 253 characters", s)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !isLabel(l) {
			return fmt.Errorf("invalid DNS name %q: label %q must be 1-63 letters, digits and '-', starting and ending with a letter or digit", s, l)
		}
	}
	if len(labels) < minLabels {
		return fmt.Errorf("invalid DNS name %q: must be a fully qualified name such as \"svc.example.com\"", s)
	}
	return nil
}

// ParseIPv4 parses a dotted-quad IPv4 address.
func ParseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IPv4 address %q", s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("must be an IPv4 address, got %q", s)
	}
	return a, nil
}

// ParseCIDR parses a canonical IPv4 CIDR: "192.168.0.1/24" is rejected with a hint to
// write 192.168.0.0/24.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("must be an IPv4 CIDR, got %q", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s is not a network address: did you mean %s?", s, m)
	}
	return p, nil
}

// Ranges a host address or VP CIDR may not use.
var (
	loopback    = netip.MustParsePrefix("127.0.0.0/8")
	linkLocal   = netip.MustParsePrefix("169.254.0.0/16")
	multicast   = netip.MustParsePrefix("224.0.0.0/4")
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	reserved    = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	broadcastIP = netip.MustParseAddr("255.255.255.255")
	badVPRanges = []struct {
		p    netip.Prefix
		what string
	}{
		{thisNetwork, "\"this network\" (0.0.0.0/8)"},
		{loopback, "loopback (127.0.0.0/8)"},
		{linkLocal, "link-local (169.254.0.0/16)"},
		{multicast, "multicast (224.0.0.0/4)"},
		{reserved, "reserved (240.0.0.0/4)"},
	}
)

// checkHostIP checks an IPv4 address of a host. strict (services, servers, VIPs) also
// rejects loopback and link-local addresses; every host address must be unicast.
func checkHostIP(s string, strict bool) error {
	a, err := ParseIPv4(s)
	if err != nil {
		return err
	}
	switch {
	case a.IsUnspecified():
		return fmt.Errorf("must not be the unspecified address, got %s", a)
	case a == broadcastIP:
		return fmt.Errorf("must not be the broadcast address, got %s", a)
	case a.IsMulticast():
		return fmt.Errorf("must not be a multicast address, got %s", a)
	case strict && a.IsLoopback():
		return fmt.Errorf("must not be a loopback address, got %s", a)
	case strict && a.IsLinkLocalUnicast():
		return fmt.Errorf("must not be a link-local address, got %s", a)
	}
	return nil
}

// checkVPRange checks that a VP CIDR is usable: unicast space, room for the gateway's
// address, VIPs and presence IPs.
func checkVPRange(p netip.Prefix) error {
	for _, r := range badVPRanges {
		if p.Overlaps(r.p) {
			return fmt.Errorf("%s overlaps %s space", p, r.what)
		}
	}
	if p.Bits() > 30 {
		return fmt.Errorf("%s is too small: a VP CIDR needs at least 4 addresses (/30)", p)
	}
	if p.Bits() < MinVPCIDRBits {
		return fmt.Errorf("%s is too large: a VP CIDR may be at most a /%d (its upper half is one gateway's presence-IP pool)", p, MinVPCIDRBits)
	}
	return nil
}

// MinVPCIDRBits bounds a VP CIDR's size: /16 gives 32,767 VIPs and as many presence IPs.
const MinVPCIDRBits = 16

// CheckVPCIDR checks a gateway's VP CIDR against the overlay CIDR the control plane is
// configured with: besides the checks Validate makes, the two must not overlap. (VP CIDRs
// of different gateways may overlap: that is the point of virtual presence.)
func CheckVPCIDR(vp, overlay netip.Prefix) error {
	if !vp.IsValid() || !vp.Addr().Is4() {
		return fmt.Errorf("VP CIDR %s: must be an IPv4 CIDR", vp)
	}
	if m := vp.Masked(); m != vp {
		return fmt.Errorf("VP CIDR %s is not a network address: did you mean %s?", vp, m)
	}
	if err := checkVPRange(vp); err != nil {
		return fmt.Errorf("VP CIDR %w", err)
	}
	if overlay.IsValid() && vp.Overlaps(overlay) {
		return fmt.Errorf("VP CIDR %s overlaps the overlay CIDR %s", vp, overlay)
	}
	return nil
}

// CheckPublicKey checks a WireGuard public key: 32 bytes, standard base64.
func CheckPublicKey(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("invalid WireGuard key: not base64")
	}
	if len(b) != 32 {
		return fmt.Errorf("invalid WireGuard key: %d bytes, want 32", len(b))
	}
	return nil
}

// CheckEndpoint checks a WireGuard endpoint: host:port where host is an IPv4 address or a
// DNS name and port is 1-65535.
func CheckEndpoint(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid endpoint %q: want host:port", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("invalid endpoint %q: port must be 1-65535", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return fmt.Errorf("invalid endpoint %q: host must be an IPv4 address or a DNS name", s)
		}
		if a.IsUnspecified() || a.IsMulticast() || a == broadcastIP {
			return fmt.Errorf("invalid endpoint %q: %s is not a unicast address", s, a)
		}
		return nil
	}
	if err := CheckDomainName(host, 1); err != nil {
		return fmt.Errorf("invalid endpoint %q: host must be an IPv4 address or a DNS name", s)
	}
	return nil
}
