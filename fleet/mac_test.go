package fleet

import (
	"testing"
)

// testMACKey is the MAC key of the tests' tiers, purgers and leases.
var testMACKey = []byte("imagegate fleet tests: a 32-byte")

func TestMACKeyRequired(t *testing.T) {
	c := openClient(t, "redis://127.0.0.1:1", Options{})
	for name, f := range map[string]func(){
		"NewByteTier": func() { NewByteTier(c, 0, nil) },
		"NewPurger":   func() { NewPurger(c, "ch", []byte("short"), func(string, string) {}) },
		"NewLeases":   func() { NewLeases(c, "ch", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s accepted a short MAC key", name)
				}
			}()
			f()
		}()
	}
}

func TestMACSeparatesParts(t *testing.T) {
	a := mac(testMACKey, domainObject, []byte("ab"), []byte("c"))
	for _, other := range [][]byte{
		mac(testMACKey, domainObject, []byte("a"), []byte("bc")),
		mac(testMACKey, domainPurge, []byte("ab"), []byte("c")),
		mac([]byte("another key of at least 16 bytes"), domainObject, []byte("ab"), []byte("c")),
	} {
		if validMAC(testMACKey, other, domainObject, []byte("ab"), []byte("c")) {
			t.Errorf("MAC %x verifies as %x", other, a)
		}
	}
	if !validMAC(testMACKey, a, domainObject, []byte("ab"), []byte("c")) {
		t.Error("a MAC does not verify")
	}
}
