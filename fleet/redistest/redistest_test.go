package redistest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The starters are tested by what a user of them relies on.

func TestStartAnswersWithPassword(t *testing.T) {
	s := Start(t)
	if err := s.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
}

func TestStartTLSAnswersWithTheCA(t *testing.T) {
	s := StartTLS(t)
	if !strings.HasPrefix(s.URL, "rediss://") || s.CAFile == "" {
		t.Fatalf("URL %q, CAFile %q", s.URL, s.CAFile)
	}
	if err := s.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
}

func TestACLUserIsLimitedToThePrefix(t *testing.T) {
	s := Start(t)
	s.AddACLUser("gw", "pw")
	rdb := s.Client()
	ctx := context.Background()
	if err := rdb.Do(ctx, "AUTH", "gw", "pw").Err(); err != nil {
		t.Fatalf("AUTH gw: %v", err)
	}
	if err := rdb.Set(ctx, "imagegate:x", "1", time.Minute).Err(); err != nil {
		t.Fatalf("SET inside the prefix: %v", err)
	}
	if err := rdb.Set(ctx, "other:x", "1", time.Minute).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SET outside the prefix: %v, want NOPERM", err)
	}
}

func TestStartClusterIsOK(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Nodes) != 3 || len(c.URLs()) != 3 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
}

func TestStartSentinelKnowsThePrimary(t *testing.T) {
	s := StartSentinel(t)
	addr, err := s.PrimaryAddr(context.Background())
	if err != nil || addr != s.Primary.Addr {
		t.Fatalf("primary %q (%v), want %q", addr, err, s.Primary.Addr)
	}
}
