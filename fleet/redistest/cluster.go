package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Cluster is a running Redis Cluster of primaries without replicas, every
// node with the same password.
type Cluster struct {
	// Nodes are the primaries, in the order their slots were assigned.
	Nodes []*Server
	// Password is every node's requirepass.
	Password string
}

// StartCluster runs a Redis Cluster of n primaries (at least 3, as
// redis-cli requires) and returns once every node reports the cluster ok.
// Each node is started with --cluster-enabled yes on its own free port
// and cluster bus port, and the cluster is created the way an operator
// would:
//
//	redis-cli --cluster create 127.0.0.1:P1 ... --cluster-replicas 0 --cluster-yes
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	cli := Tool(t, "redis-cli")
	c := &Cluster{Password: randomHex(t)}
	for range n {
		s := newServer(t, nil)
		s.Password = c.Password
		s.args = func(port string) []string {
			busPort, err := FreePort()
			if err != nil {
				t.Fatalf("redistest: %v", err)
			}
			return append(s.nodeArgs(port),
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(busPort),
				"--cluster-node-timeout", "2000",
				"--masterauth", s.Password,
			)
		}
		s.listen()
		s.URL = "redis://:" + s.Password + "@" + s.Addr
		c.Nodes = append(c.Nodes, s)
	}

	args := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	// REDISCLI_AUTH keeps the password off the command line.
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+c.Password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range c.Nodes {
		rdb := s.Client()
		waitFor(t, "cluster state ok on "+s.Addr, func(ctx context.Context) error {
			info, err := rdb.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("cluster info: %q", info)
			}
			return nil
		})
	}
	return c
}

// URLs returns one redis:// URL per node: the cluster's seeds.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL
	}
	return urls
}

// AddACLUser creates user on every node, as Server.AddACLUser does, and
// returns one URL per node logging in as that user.
func (c *Cluster) AddACLUser(user, password string) []string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.AddACLUser(user, password)
		urls[i] = strings.TrimSuffix(urls[i], "/0")
	}
	return urls
}
