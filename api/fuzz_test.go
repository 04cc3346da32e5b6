package api

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzDecode checks that Decode never panics, that Validate never panics on what it
// returns, and that a valid object survives re-encoding (as JSON and as YAML) and decoding
// unchanged.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "seed", "*"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{"kind":"EService","metadata":{"name":"s","labels":{"a":"b"}},"protocol":"udp","port":53,"ip":"10.0.0.1","eSiteName":"a"}`,
		`[{"kind":"EGateway","metadata":{"name":"g"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s","publicKey":"uXf5DPNLbzFDzwE1eIgTBmr8kpNcYtXhSqTBzCfTNVI=","endpoint":"a.b:1"}]`,
		`{"kind":"EServer","eServerName":"x","ip":"10.0.0.2","eSiteName":"s","status":{"conditions":[{"type":"T","status":"True"}]}}`,
		"kind: ServiceExpose\neServiceName: web\neSites: [a, b]\n---\nkind: VirtualPresence\nmetadata: {name: v, resourceVersion: \"3\"}\neServiceName: web\n",
		"- kind: EPolicy\n  metadata: {name: p}\n  allowedSites: [a]\n",
		"a: &x {kind: ESite}\nb: *x\n",
		`{"kind":"ESite","metadata":{"name":"a"},"metadata":{}}`,
		"",
		"[",
		"---\n---\n",
		// Nesting past MaxDepth, in JSON, YAML flow and block style and through aliases.
		`{"kind":"ESite","metadata":{"name":"a","labels":` + strings.Repeat("[", 9990) + strings.Repeat("]", 9990) + `}}`,
		"kind: ESite\nmetadata:\n  name: a\n  labels: " + strings.Repeat("{a: ", 40) + "1" + strings.Repeat("}", 40) + "\n",
		"kind: ESite\nmetadata:\n  labels:\n" + deepBlockYAML(12),
		"x: &a [[[[[[1]]]]]]\ny: [[[[[*a]]]]]\n",
		"x: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz", data)
		if err != nil {
			if objs != nil {
				t.Fatalf("objects with error %v", err)
			}
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error %T is not a *DecodeError: %v", err, err)
			}
			return
		}
		for _, o := range objs {
			again, _ := Decode("fuzz", data)
			if !reflect.DeepEqual(objs, again) {
				t.Fatalf("decoding twice differs")
			}
			if Validate(o) != nil {
				continue
			}
			js, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("marshal %s: %v", Key(o), err)
			}
			back, err := Decode("re-encoded", js)
			if err != nil || len(back) != 1 {
				t.Fatalf("decode of re-encoded %s: %v\n%s", Key(o), err, js)
			}
			if !Equal(o, back[0]) || !reflect.DeepEqual(Key(o), Key(back[0])) {
				t.Fatalf("JSON round trip changed %s:\n%#v\n%#v", Key(o), o, back[0])
			}
			if err := Validate(back[0]); err != nil {
				t.Fatalf("round trip invalidated %s: %v", Key(o), err)
			}
			y, err := yaml.Marshal(o)
			if err != nil {
				t.Fatalf("yaml marshal %s: %v", Key(o), err)
			}
			back, err = Decode("re-encoded.yaml", y)
			if err != nil || len(back) != 1 {
				t.Fatalf("decode of YAML %s: %v\n%s", Key(o), err, y)
			}
			if !Equal(o, back[0]) {
				t.Fatalf("YAML round trip changed %s:\n%#v\n%#v", Key(o), o, back[0])
			}
			c := DeepCopy(o)
			if !reflect.DeepEqual(c, o) || !Equal(c, o) {
				t.Fatalf("DeepCopy differs for %s", Key(o))
			}
		}
	})
}
