package jointoken

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestRoundTripAndRefusals(t *testing.T) {
	h := sha256.Sum256([]byte("cert"))
	tok, err := New("203.0.113.1:7444", h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(" " + tok.String() + "\n")
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	id, sec, err := SplitCredential(tok.Credential())
	if err != nil || id != tok.ID || sec != tok.Secret {
		t.Fatalf("credential: %v", err)
	}
	if !SecretMatches(tok.Secret, HashSecret(tok.Secret)) || SecretMatches(tok.Secret+"x", HashSecret(tok.Secret)) {
		t.Fatal("SecretMatches")
	}
	for name, s := range map[string]string{
		"empty":       "",
		"no prefix":   strings.TrimPrefix(tok.String(), Prefix),
		"not base64":  Prefix + "!!!",
		"long":        Prefix + strings.Repeat("A", MaxLen),
		"not json":    Prefix + "aGVsbG8",
		"truncated":   tok.String()[:len(tok.String())-4],
		"bad address": (Token{Address: "nohost", ID: tok.ID, Secret: tok.Secret, CertHash: h}).String(),
		"bad id":      (Token{Address: tok.Address, ID: "XYZ", Secret: tok.Secret, CertHash: h}).String(),
		"bad secret":  (Token{Address: tok.Address, ID: tok.ID, Secret: "short", CertHash: h}).String(),
	} {
		_, err := Parse(s)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && len(s) > 20 && strings.Contains(err.Error(), s[len(Prefix):]) {
			t.Errorf("%s: the error quotes the token", name)
		}
	}
	if _, _, err := SplitCredential("abc"); err == nil {
		t.Fatal("bad credential accepted")
	}
}

func FuzzParse(f *testing.F) {
	tok, _ := New("edge.example:7444", sha256.Sum256(nil))
	f.Add(tok.String())
	f.Add(Prefix + "e30")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), s) && len(s) > 16 {
				t.Fatal("the error quotes the input")
			}
			return
		}
		again, err := Parse(got.String())
		if err != nil || again != got {
			t.Fatalf("a parsed token does not round-trip: %v", err)
		}
	})
}
