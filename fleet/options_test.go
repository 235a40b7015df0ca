package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestValidateReportsEveryProblem gives Options with one problem per
// setting and expects one error for each, naming the setting, and none
// quoting a password.
func TestValidateReportsEveryProblem(t *testing.T) {
	const pw, sentinelPW = "Hunter2Sekrit", "S3ntinelSekrit"
	garbage := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{
		URLs:             []string{"redis://:" + pw + "@h:1/2", "redis://:" + pw + "@h:99999"},
		Cluster:          true,
		SentinelMaster:   "my master",
		SentinelPassword: sentinelPW,
		TLSCAFile:        garbage,
		KeyPrefix:        "img{x}:",
		Timeout:          -1,
	}
	err := o.Validate()
	if err == nil {
		t.Fatal("Validate accepted them")
	}
	msg := err.Error()
	for _, want := range []string{
		"url 2 of 2: invalid port",
		"cluster and sentinel: choose one",
		"sentinel: the primary's name must be printable ASCII",
		"tls_ca_file: no PEM certificate",
		"tls_ca_file: has no effect on redis:// urls",
		"key_prefix: must not contain { or }",
		"timeout: must be positive",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q; got:\n%s", want, msg)
		}
	}
	for _, secret := range []string{"Hunter", "Sekrit", "S3ntinel"} {
		if strings.Contains(msg, secret) {
			t.Errorf("errors quote %q:\n%s", secret, msg)
		}
	}
	if _, err := Open(o); err == nil || err.Error() != msg {
		t.Errorf("Open's error %v, want Validate's", err)
	}
}

func TestValidateSettingsAlone(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // "" for valid
	}{
		{"one node", Options{URLs: []string{"redis://h:1/3"}}, ""},
		{"no url", Options{}, "url: at least one"},
		{"cluster endpoint", Options{URLs: []string{"redis://h:1"}, Cluster: true}, ""},
		{"cluster endpoint with a database", Options{URLs: []string{"redis://h:1/3"}, Cluster: true}, "url: a cluster has only database 0"},
		{"seeds with a database", Options{URLs: []string{"redis://h:1/3", "redis://h:2/3"}}, "url: a cluster has only database 0"},
		{"seeds disagree on the database", Options{URLs: []string{"redis://h:1/3", "redis://h:2/4"}, SentinelMaster: "m"}, "url 2 of 2: database differs from url 1"},
		{"sentinels with a database", Options{URLs: []string{"redis://h:1/3", "redis://h:2/3"}, SentinelMaster: "m", SentinelPassword: "p"}, ""},
		{"sentinel_password alone", Options{URLs: []string{"redis://h:1"}, SentinelPassword: "p"}, "sentinel_password: has no effect without sentinel"},
		{"ca file missing", Options{URLs: []string{"rediss://h:1"}, TLSCAFile: "/nonexistent/ca.pem"}, "tls_ca_file: open /nonexistent/ca.pem"},
		{"prefix with a space", Options{URLs: []string{"redis://h:1"}, KeyPrefix: "a b"}, "key_prefix: must be printable ASCII"},
		{"long prefix", Options{URLs: []string{"redis://h:1"}, KeyPrefix: strings.Repeat("p", 65)}, "key_prefix: longer than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestOpenPicksTheClient checks which go-redis client each topology gets,
// and what it is told.
func TestOpenPicksTheClient(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"one node", Options{URLs: []string{"redis://h:1"}}, "*redis.Client"},
		{"seeds", Options{URLs: []string{"redis://h:1", "redis://h:2"}}, "*redis.ClusterClient"},
		{"configuration endpoint", Options{URLs: []string{"redis://h:1"}, Cluster: true}, "*redis.ClusterClient"},
		{"sentinel", Options{URLs: []string{"redis://h:1"}, SentinelMaster: "m"}, "*redis.Client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro, err := tt.o.redisOptions()
			if err != nil {
				t.Fatal(err)
			}
			var got string
			switch c := redis.NewUniversalClient(ro).(type) {
			case *redis.ClusterClient:
				got = "*redis.ClusterClient"
				_ = c.Close()
			case *redis.Client:
				got = "*redis.Client"
				_ = c.Close()
			}
			if got != tt.want || (tt.o.SentinelMaster != "") != (ro.MasterName != "") {
				t.Fatalf("client %s, master %q; want %s", got, ro.MasterName, tt.want)
			}
		})
	}
}

func TestOpenDefaults(t *testing.T) {
	c, err := Open(Options{URLs: []string{"redis://h:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.prefix != DefaultKeyPrefix || c.timeout != DefaultTimeout {
		t.Fatalf("prefix %q, timeout %v; want the defaults", c.prefix, c.timeout)
	}
	if got := c.Channel("v1:purge"); got != "imagegate:v1:purge" {
		t.Fatalf("Channel = %q", got)
	}
}
