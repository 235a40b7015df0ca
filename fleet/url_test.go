package fleet

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
)

func TestParseURLs(t *testing.T) {
	tests := []struct {
		name     string
		urls     []string
		addrs    []string
		user, pw string
		db       int
		tls      bool
	}{
		{name: "single", urls: []string{"redis://127.0.0.1:6380/2"}, addrs: []string{"127.0.0.1:6380"}, db: 2},
		{name: "default port", urls: []string{"redis://cache.internal"}, addrs: []string{"cache.internal:6379"}},
		{name: "password", urls: []string{"redis://:p%40ss@h:1/0"}, addrs: []string{"h:1"}, pw: "p@ss"},
		{name: "acl user", urls: []string{"redis://gate:pw@h:1"}, addrs: []string{"h:1"}, user: "gate", pw: "pw"},
		{name: "ipv6", urls: []string{"redis://[::1]:7000"}, addrs: []string{"[::1]:7000"}},
		{name: "tls", urls: []string{"rediss://:pw@cache.example:6380"}, addrs: []string{"cache.example:6380"}, pw: "pw", tls: true},
		{
			name:  "cluster seeds",
			urls:  []string{"redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7000", "redis://:pw@10.0.0.3"},
			addrs: []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:6379"},
			pw:    "pw",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, errs := parseURLs(tt.urls)
			if errs != nil {
				t.Fatalf("parseURLs: %v", errs)
			}
			if !slices.Equal(o.Addrs, tt.addrs) || o.Username != tt.user || o.Password != tt.pw || o.DB != tt.db {
				t.Errorf("got addrs %v user %q password %q db %d; want %v %q %q %d",
					o.Addrs, o.Username, o.Password, o.DB, tt.addrs, tt.user, tt.pw, tt.db)
			}
			if (o.TLSConfig != nil) != tt.tls {
				t.Fatalf("TLS config %v, want TLS %v", o.TLSConfig, tt.tls)
			}
			if tt.tls && (o.TLSConfig.MinVersion != tls.VersionTLS12 || o.TLSConfig.ServerName != "") {
				t.Errorf("TLS config: min version %x, server name %q; want TLS 1.2, each node's host",
					o.TLSConfig.MinVersion, o.TLSConfig.ServerName)
			}
		})
	}
}

// TestURLErrorsHideThePassword feeds URLs holding a password and one
// bad part: each must fail, and no error may quote any piece of the
// password, even when the password's own "/" or "@" moves it into the
// host, port or path.
func TestURLErrorsHideThePassword(t *testing.T) {
	const pw = "Hunter2Sekrit"
	pieces := []string{"Hunter", "Sekrit", "r2S"}
	tests := []struct {
		name string
		urls []string
	}{
		{"no urls", nil},
		{"wrong scheme", []string{"http://:" + pw + "@h:1"}},
		{"scheme-less", []string{pw + ":x@h:1"}},
		{"no host", []string{"redis://:" + pw + "@"}},
		{"bad port", []string{"redis://:" + pw + "@h:99999"}},
		{"port not a number", []string{"redis://:" + pw + "@h:port"}},
		{"bad escape", []string{"redis://:" + pw + "%zz@h:1"}},
		{"slash in password", []string{"redis://:Hunter/2Sekrit@h:1"}},
		{"slash in password, numeric", []string{"redis://u:12/Hunter2Sekrit@h:1"}},
		{"space in password", []string{"redis://:Hunter 2Sekrit@h:1"}},
		{"db not a number", []string{"redis://:" + pw + "@h:1/db"}},
		{"negative db", []string{"redis://:" + pw + "@h:1/-1"}},
		{"query", []string{"redis://:" + pw + "@h:1/0?dial_timeout=1s"}},
		{"fragment", []string{"redis://:" + pw + "@h:1#x"}},
		{"cluster password mismatch", []string{"redis://:" + pw + "@h:1", "redis://:other@h:2"}},
		{"cluster scheme mismatch", []string{"redis://:" + pw + "@h:1", "rediss://:" + pw + "@h:2"}},
		{"cluster with db", []string{"redis://:" + pw + "@h:1/3", "redis://:" + pw + "@h:2/3"}},
		{"cluster bad seed", []string{"redis://:" + pw + "@h:1", "redis://:" + pw + "@h:x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Options{URLs: tt.urls}.Validate()
			if err == nil {
				t.Fatal("Validate succeeded, want an error")
			}
			for _, p := range pieces {
				if strings.Contains(err.Error(), p) {
					t.Fatalf("error %q quotes %q, a piece of the password", err, p)
				}
			}
		})
	}
}
