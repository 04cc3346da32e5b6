package client

import (
	"bytes"
	"testing"
)

// FuzzDecodeAnswers feeds arbitrary server answers to every decoder of the client: none may
// panic, an error answer always reads as a non-empty message, and an edge config that
// decodes ends in a newline.
func FuzzDecodeAnswers(f *testing.F) {
	f.Add(400, "application/json", []byte(`{"error":"bad","object":"EService/x","field":"port"}`))
	f.Add(502, "text/plain", []byte("upstream\nexploded"))
	f.Add(200, "application/json", []byte(`{"kind":"EService","metadata":{"name":"a","resourceVersion":"3"},"port":80}`))
	f.Add(200, "application/json", []byte(`{"kind":"Widget"}`))
	f.Add(200, "application/json", []byte(`"name: a\n"`))
	f.Add(200, "application/json", []byte(`{"name":"a","cloud":{"syncPort":7443}}`))
	f.Add(200, "application/yaml", []byte("name: a"))
	f.Add(0, "", []byte{})
	f.Fuzz(func(t *testing.T, code int, ctype string, data []byte) {
		if msg := decodeError(code, data).Error(); msg == "" {
			t.Errorf("decodeError(%d, %q) has an empty message", code, data)
		}
		for _, k := range []string{"EService", "EServer", "VirtualPresence"} {
			if o, err := decodeObject(k, data); err == nil && o == nil {
				t.Errorf("decodeObject(%s, %q) = nil, nil", k, data)
			}
		}
		in := bytes.Clone(data)
		if y, err := edgeConfigYAML(ctype, in); err == nil && (len(y) == 0 || y[len(y)-1] != '\n') {
			t.Errorf("edgeConfigYAML(%q, %q) = %q", ctype, data, y)
		}
	})
}
