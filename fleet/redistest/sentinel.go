package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name StartSentinel's Sentinel knows the primary by.
const MasterName = "mymaster"

// Sentinel timings: the Sentinel calls the primary down after
// DownAfter without an answer and then fails over to the replica.
const (
	DownAfter       = 500 * time.Millisecond
	failoverTimeout = 5 * time.Second
)

// SentinelSet is a primary, one replica and one Sentinel monitoring them.
type SentinelSet struct {
	// Primary and Replica are the data nodes; they share a password.
	// After a failover the Replica is the primary.
	Primary, Replica *Server
	// Sentinel is the Sentinel; its Password is the Sentinel's own
	// requirepass.
	Sentinel *Server
	// URL names the Sentinel with the data nodes' password:
	// redis://:<data password>@<sentinel addr>/0.
	URL string

	srdb *redis.Client // on the Sentinel
}

// StartSentinel runs a primary, a replica of it and a Sentinel that
// monitors the primary as MasterName with a quorum of 1, and returns once
// the replica is in sync and the Sentinel knows it, so that a failover can
// happen. The Sentinel is configured as an operator would:
//
//	sentinel monitor mymaster 127.0.0.1 <port> 1
//	sentinel down-after-milliseconds mymaster 500
//	sentinel failover-timeout mymaster 5000
//	sentinel auth-pass mymaster <password>
//	requirepass <sentinel password>
func StartSentinel(t testing.TB) *SentinelSet {
	t.Helper()
	primary := Start(t)

	replica := newServer(t, nil)
	replica.Password = primary.Password
	replica.args = func(port string) []string {
		host, pport, _ := net.SplitHostPort(primary.Addr)
		return append(replica.nodeArgs(port), "--replicaof", host, pport, "--masterauth", primary.Password)
	}
	replica.listen()
	replica.URL = "redis://:" + replica.Password + "@" + replica.Addr + "/0"
	rrdb := replica.Client()
	waitFor(t, "replica in sync", func(ctx context.Context) error {
		info, err := rrdb.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica not in sync: %q", info)
		}
		return nil
	})

	sentinel := newServer(t, nil)
	conf := filepath.Join(sentinel.dir, "sentinel.conf")
	sentinel.args = func(port string) []string {
		host, pport, _ := net.SplitHostPort(primary.Addr)
		// The Sentinel rewrites its configuration file, so it must be a
		// file, written afresh for each start.
		c := strings.Join([]string{
			"port " + port,
			"bind 127.0.0.1",
			"dir " + sentinel.dir,
			"requirepass " + sentinel.Password,
			fmt.Sprintf("sentinel monitor %s %s %s 1", MasterName, host, pport),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", MasterName, DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", MasterName, failoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel auth-pass %s %s", MasterName, primary.Password),
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(c), 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		return []string{conf, "--sentinel"}
	}
	sentinel.listen()
	sentinel.URL = "redis://:" + sentinel.Password + "@" + sentinel.Addr

	srdb := sentinel.Client()
	waitFor(t, "Sentinel knows the replica", func(ctx context.Context) error {
		replicas, err := srdb.Do(ctx, "SENTINEL", "REPLICAS", MasterName).Slice()
		if err != nil {
			return err
		}
		if len(replicas) != 1 {
			return fmt.Errorf("the Sentinel knows %d replicas, want 1", len(replicas))
		}
		return nil
	})
	return &SentinelSet{
		Primary: primary, Replica: replica, Sentinel: sentinel,
		URL:  "redis://:" + primary.Password + "@" + sentinel.Addr + "/0",
		srdb: srdb,
	}
}

// PrimaryAddr returns the address the Sentinel now gives for the primary.
func (s *SentinelSet) PrimaryAddr(ctx context.Context) (string, error) {
	addr, err := s.srdb.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName).StringSlice()
	if err != nil {
		return "", err
	}
	if len(addr) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %q", addr)
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}
