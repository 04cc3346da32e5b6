package api

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readSeed(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedObjects are the seed's seven samples as they must decode.
func seedObjects() []Object {
	tm := func(k string) TypeMeta { return TypeMeta{Kind: k, APIVersion: "v1"} }
	return []Object{
		&ESite{TypeMeta: tm(KindESite), Metadata: ObjectMeta{Name: "TokyoChibaSite1"}},
		&EGateway{TypeMeta: tm(KindEGateway), Metadata: ObjectMeta{Name: "TokyoChibaGateway"},
			IP: "202.168.0.10", VirtualPresenceIPcidr: "192.168.0.0/24", ESiteName: "TokyoChibaSite1"},
		&VirtualPresence{TypeMeta: tm(KindVirtualPresence), Metadata: ObjectMeta{Name: "vp1"},
			VirtualIP: "192.168.0.10", EServiceName: "TykyoChibaNginx"},
		&EService{TypeMeta: tm(KindEService), Metadata: ObjectMeta{Name: "TykyoChibaNginx"},
			Port: 8080, Protocol: "TCP", IP: "10.0.0.10", DomainName: "EServiceNginx", ESiteName: "TokyoChibaSite1"},
		&EServer{TypeMeta: tm(KindEServer), Metadata: ObjectMeta{Name: "Server1"},
			EServerName: "Server1", IP: "10.0.0.20", ESiteName: "TokyoChibaSite1"},
		&EPolicy{TypeMeta: tm(KindEPolicy), Metadata: ObjectMeta{Name: "Policy1"}, AllowedServers: []string{"Server1"}},
		&ServiceExpose{TypeMeta: tm(KindServiceExpose), Metadata: ObjectMeta{Name: "TykyoChibaNginx"},
			EServiceName: "TykyoChibaNginx", DNSName: "url1.test.com",
			ESites: []string{"TokyoChibaSite1"}, EPolicys: []string{"Policy1", "Policy2"}},
	}
}

func TestDecodeSeedAsWrittenFails(t *testing.T) {
	data := readSeed(t, "seed-as-written.json")
	// The seed's samples are tab-indented; the EService sample lacks a comma after
	// "domainName": "EServiceNginx", so the next line's key (line 40, after two tabs) is
	// where the decoder stops.
	objs, err := Decode("seed.json", data)
	const want = `seed.json:40:3: invalid character '"' after object key:value pair`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	if objs != nil {
		t.Fatalf("objects returned with error: %v", objs)
	}
	var de *DecodeError
	if !errors.As(err, &de) || de.Line != 40 || de.Column != 3 {
		t.Fatalf("not a *DecodeError at 40:3: %#v", err)
	}
	if got := strings.Split(string(data), "\n")[39]; got != "\t\t\"eSiteName\": \"TokyoChibaSite1\"" {
		t.Fatalf("line 40 is %q", got)
	}
}

func TestDecodeSeedEquivalents(t *testing.T) {
	want := seedObjects()
	for _, name := range []string{"seed-fixed.json", "seed.yaml", "seed-list.yaml"} {
		t.Run(name, func(t *testing.T) {
			data := readSeed(t, name)
			got, err := Decode(name, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d objects, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("object %d:\n got %#v\nwant %#v", i, got[i], want[i])
				}
				if err := Validate(got[i]); err != nil {
					t.Errorf("object %d does not validate: %v", i, err)
				}
			}
			again, err := Decode(name, data)
			if err != nil || !reflect.DeepEqual(got, again) {
				t.Fatalf("decoding twice differs: %v", err)
			}
			if err := ValidateAll(got); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeShapes(t *testing.T) {
	site := `{"kind":"ESite","metadata":{"name":"a"}}`
	svc := `{"kind":"EService","metadata":{"name":"s"},"protocol":"udp","port":53,"ip":"10.0.0.1","eSiteName":"a"}`
	tests := []struct {
		name string
		in   string
		want []string // keys
	}{
		{"empty", "", nil},
		{"only space", " \n\t\n", nil},
		{"one object", site, []string{"ESite/a"}},
		{"array", "[" + site + "," + svc + "]", []string{"ESite/a", "EService/s"}},
		{"empty array", "[]", nil},
		{"concatenated", site + svc, []string{"ESite/a", "EService/s"}},
		{"concatenated with blank lines", "\t" + site + "\n\t\n" + svc + "\n", []string{"ESite/a", "EService/s"}},
		{"array then object", "[" + site + "]\n" + svc, []string{"ESite/a", "EService/s"}},
		{"byte order mark", "\xef\xbb\xbf" + site, []string{"ESite/a"}},
		{"yaml one", "kind: ESite\nmetadata:\n  name: a\n", []string{"ESite/a"}},
		{"yaml multi", "---\nkind: ESite\nmetadata: {name: a}\n---\n# just a comment\n---\nkind: EService\nmetadata: {name: s}\nprotocol: UDP\nport: 53\nip: 10.0.0.1\neSiteName: a\n...\n", []string{"ESite/a", "EService/s"}},
		{"yaml list", "- kind: ESite\n  metadata: {name: a}\n- kind: ESite\n  metadata: {name: b}\n", []string{"ESite/a", "ESite/b"}},
		{"yaml only comments", "# nothing here\n", nil},
		{"no apiVersion", `{"kind":"EPolicy","metadata":{"name":"p"}}`, []string{"EPolicy/p"}},
		{"eServerName only", `{"kind":"EServer","eServerName":"srv","ip":"10.0.0.2","eSiteName":"a"}`, []string{"EServer/srv"}},
		{"metadata.name only", `{"kind":"EServer","metadata":{"name":"srv"},"ip":"10.0.0.2","eSiteName":"a"}`, []string{"EServer/srv"}},
		{"both names equal", `{"kind":"EServer","eServerName":"srv","metadata":{"name":"srv"}}`, []string{"EServer/srv"}},
		{"expose named after service", `{"kind":"ServiceExpose","eServiceName":"web"}`, []string{"ServiceExpose/web"}},
		{"expose with own name", `{"kind":"ServiceExpose","metadata":{"name":"x"},"eServiceName":"web"}`, []string{"ServiceExpose/x"}},
		{"status accepted", `{"kind":"ESite","metadata":{"name":"a","resourceVersion":"7"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}`, []string{"ESite/a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode("in", []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range objs {
				keys = append(keys, Key(o))
			}
			if !reflect.DeepEqual(keys, tc.want) {
				t.Fatalf("keys = %v, want %v", keys, tc.want)
			}
		})
	}
}

func TestDecodeNormalizes(t *testing.T) {
	objs, err := Decode("in", []byte(`{"kind":"EService","metadata":{"name":"s"},"protocol":"udp","port":53,"ip":"10.0.0.1","eSiteName":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	s := objs[0].(*EService)
	if s.Protocol != "UDP" || s.APIVersion != "v1" || s.Kind != KindEService {
		t.Fatalf("not normalized: %+v", s)
	}
}

// pos returns "line:col" of the first occurrence of sub in s, for building expected errors.
func pos(t *testing.T, s, sub string) (int, int) {
	t.Helper()
	i := strings.Index(s, sub)
	if i < 0 {
		t.Fatalf("%q not in input", sub)
	}
	return lineCol([]byte(s), i)
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		at   string // the error is at the first occurrence of this text ("" = no position check)
		want string // the error without "in:line:col: "
	}{
		{"syntax", "{\"kind\": \"ESite\",\n  \"metadata\": {}\n  \"x\": 1}", `"x"`,
			`invalid character '"' after object key:value pair`},
		{"unclosed", `{"kind": "ESite"`, "", "unexpected end of input (unclosed object or array?)"},
		{"garbage after object", `{"kind":"ESite","metadata":{"name":"a"}} x`, "x",
			"invalid character 'x' looking for beginning of value"},
		{"unknown field", "{\"kind\":\"EService\",\"metadata\":{\"name\":\"nginx\"},\n \"prot\":\"TCP\"}", `"prot"`,
			`EService/nginx: prot: unknown field (did you mean "port"?)`},
		{"unknown field case", `{"kind":"EService","metadata":{"name":"nginx"},"Protocol":"TCP"}`, `"Protocol"`,
			`EService/nginx: Protocol: unknown field (did you mean "protocol"?)`},
		{"unknown nested field", `{"kind":"ESite","metadata":{"nmae":"x"}}`, `"nmae"`,
			`ESite: metadata.nmae: unknown field (did you mean "name"?)`},
		{"unknown field no suggestion", `{"kind":"ESite","metadata":{"name":"a"},"zzzzzzzz":1}`, `"zzzzzzzz"`,
			`ESite/a: zzzzzzzz: unknown field`},
		{"unknown field in condition", `{"kind":"ESite","metadata":{"name":"a"},"status":{"conditions":[{"type":"X","bogus":1}]}}`, `"bogus"`,
			`ESite/a: status.conditions[0].bogus: unknown field`},
		{"no kind", `{"metadata":{"name":"a"}}`, `{`,
			`object #1: no kind (want one of ESite, EGateway, EService, EServer, EPolicy, ServiceExpose, VirtualPresence)`},
		{"kind of second object", `[{"kind":"ESite","metadata":{"name":"a"}}, {"kind":"Pod"}]`, `"kind":"Pod"`,
			`object #2: kind: unknown kind "Pod" (want one of ESite, EGateway, EService, EServer, EPolicy, ServiceExpose, VirtualPresence)`},
		{"kind wrong case", `{"kind":"eservice"}`, `"kind"`, `object #1: kind: unknown kind "eservice" (did you mean "EService"?)`},
		{"kind not string", `{"kind":7}`, `"kind"`, `object #1: kind: must be a string`},
		{"apiVersion", `{"kind":"ESite","apiVersion":"v2","metadata":{"name":"a"}}`, `"apiVersion"`,
			`ESite/a: apiVersion: must be "v1", got "v2"`},
		{"duplicate field", `{"kind":"EPolicy","metadata":{"name":"p"},"allowedSites":["a"],"allowedSites":[]}`, `"allowedSites":[]`,
			`EPolicy/p: allowedSites: duplicate field`},
		{"port as string", `{"kind":"EService","metadata":{"name":"s"},"port":"80"}`, `"port"`,
			`EService/s: port: cannot use string as an integer (int32)`},
		{"port overflow", `{"kind":"EService","metadata":{"name":"s"},"port":1e10}`, `"port"`,
			`EService/s: port: cannot use number 1e10 as an integer (int32)`},
		{"list as string", `{"kind":"EPolicy","metadata":{"name":"p"},"allowedSites":"a"}`, `"allowedSites"`,
			`EPolicy/p: allowedSites: cannot use string as a list of strings`},
		{"resourceVersion unquoted", `{"kind":"ESite","metadata":{"name":"a","resourceVersion":5}}`, `"resourceVersion"`,
			`ESite/a: metadata.resourceVersion: must be a decimal number in a string`},
		{"eServerName conflict", `{"kind":"EServer","eServerName":"a","metadata":{"name":"b"}}`, `"eServerName"`,
			`EServer/b: eServerName: is "a" but metadata.name is "b"; set one or make them equal`},
		{"array of non-objects", `[{"kind":"ESite","metadata":{"name":"a"}}, 1]`, `1]`,
			`list element 1: expected an object, got a number`},
		{"top-level string", `"ESite"`, `"`, `expected an object or a list of objects, got a string`},
		{"yaml scalar", "ESite\n", "", "expected an object or a list of objects, got a string"},
		{"yaml syntax", "kind: ESite\nmetadata:\n  name: a\n---\nkind: ESite\nmetadata:\n  name: b\n bad: x\n", "", "did not find expected key"},
		{"yaml duplicate key", "kind: ESite\nkind: ESite\n", "", `key "kind" already set in map`},
		{"yaml unknown field", "kind: ESite\nmetadata: {name: a}\n---\nkind: EService\nmetadata:\n  name: b\n  labls: {}\n", "labls",
			`EService/b: metadata.labls: unknown field (did you mean "labels"?)`},
		{"yaml list unknown field", "- kind: ESite\n  metadata: {name: a}\n- kind: EGateway\n  metadata: {name: g}\n  foo: 1\n", "foo",
			`EGateway/g: foo: unknown field`},
		{"yaml list non-object", "- kind: ESite\n  metadata: {name: a}\n- 5\n", "5",
			`list element 1: expected an object, got a number`},
		{"yaml nested list element", "kind: EPolicy\nmetadata: {name: p}\nallowedSites:\n- a\n- [b]\n", "allowedSites",
			`EPolicy/p: allowedSites: cannot use array as a string`},
		{"yaml type error", "kind: EService\nmetadata: {name: s}\nport: eighty\n", "port",
			`EService/s: port: cannot use string as an integer (int32)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode("in", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, objects %v", objs)
			}
			if objs != nil {
				t.Fatalf("objects returned with error")
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not a *DecodeError: %v", err, err)
			}
			if tc.want != "" && de.Message != tc.want && !strings.HasSuffix(err.Error(), ": "+tc.want) {
				t.Errorf("err = %q, want suffix %q", err, tc.want)
			}
			if tc.at != "" {
				line, col := pos(t, tc.in, tc.at)
				if de.Line != line || de.Column != col {
					t.Errorf("err at %d:%d, want %d:%d (%v)", de.Line, de.Column, line, col, err)
				}
			}
		})
	}
}

func TestDecodeYAMLSyntaxLine(t *testing.T) {
	in := "kind: ESite\nmetadata:\n  name: a\n---\nkind: ESite\nmetadata:\n  name: b\n bad: x\n"
	_, err := Decode("f.yaml", []byte(in))
	// The YAML parser reports the line of the mapping it was parsing ("  name: b"), not
	// the offending line; the document started at line 4, so that is line 7 of the file.
	const want = "f.yaml:7: did not find expected key"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	in := `{"kind":"EService","metadata":{"name":"nginx"},"prot":1}`
	_, err := Decode("svc.json", []byte(in))
	const want = `svc.json:1:48: EService/nginx: prot: unknown field (did you mean "port"?)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}
