package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Environment variables of the local ClickHouse cluster (`testenv/services.sh env`; defaults match services.sh).
const (
	EnvClickHouseClusterAddrs = "SIGNALSTAGE_CLICKHOUSE_CLUSTER_ADDRS"
	EnvClickHouseClusterName  = "SIGNALSTAGE_CLICKHOUSE_CLUSTER_NAME"
	EnvZooKeeper              = "SIGNALSTAGE_ZOOKEEPER"

	DefaultClickHouseClusterAddrs = "127.0.0.1:29001,127.0.0.1:29002,127.0.0.1:29003,127.0.0.1:29004"
	DefaultClickHouseClusterName  = "signalstage"
	DefaultZooKeeper              = "127.0.0.1:29181"
)

// clickHouseNodeNames are services.sh's nodes in the order of SIGNALSTAGE_CLICKHOUSE_CLUSTER_ADDRS.
var clickHouseNodeNames = []string{"s1r1", "s1r2", "s2r1", "s2r2"}

// ClickHouseCluster is a test's handle on the local ClickHouse cluster that `make up-cluster` starts: two shards
// of two replicas (Debian's clickhouse-server 18.16) named Cluster in remote_servers, with internal_replication,
// macros {cluster}, {shard} (1, 2) and {replica} (s1r1 ...), and one ZooKeeper. The test gets a database of its
// own created ON CLUSTER, dropped when it ends; replicas and ZooKeeper it took down are started again first.
// Cluster tests must not run in parallel with each other: they take shared servers down.
type ClickHouseCluster struct {
	// Cluster is the remote_servers name, for ON CLUSTER and Distributed(...).
	Cluster string
	// Database exists on every node.
	Database string
	// Nodes are s1r1, s1r2 (shard 1), s2r1, s2r2 (shard 2).
	Nodes []*ClickHouseNode
	// ZooKeeper is its client address.
	ZooKeeper string

	t    testing.TB
	sh   servicesScript
	down map[string]bool
}

// ClickHouseNode is one server of the cluster.
type ClickHouseNode struct {
	// Name is services.sh's (clickhouse-<Name>): s1r1 ... s2r2.
	Name           string
	Shard, Replica int
	// Addr is the native-protocol address.
	Addr string
	// Conn has the test's database as its default; it reconnects by itself after the server restarts.
	Conn driver.Conn
	c    *ClickHouseCluster
}

// NewClickHouseCluster connects to every node; it skips the test unless SIGNALSTAGE_CLUSTER=1 and fails it if a
// node does not answer. It creates the test's database ON CLUSTER.
func NewClickHouseCluster(t testing.TB) *ClickHouseCluster {
	t.Helper()
	requireClusterSuite(t)
	c := &ClickHouseCluster{
		Cluster:   getenv(EnvClickHouseClusterName, DefaultClickHouseClusterName),
		Database:  uniqueName(t, 40),
		ZooKeeper: getenv(EnvZooKeeper, DefaultZooKeeper),
		t:         t,
		down:      map[string]bool{},
	}
	addrs := strings.Split(getenv(EnvClickHouseClusterAddrs, DefaultClickHouseClusterAddrs), ",")
	if len(addrs) != len(clickHouseNodeNames) {
		t.Fatalf("%s=%q: want %d addresses", EnvClickHouseClusterAddrs, addrs, len(clickHouseNodeNames))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, addr := range addrs {
		n := &ClickHouseNode{Name: clickHouseNodeNames[i], Shard: i/2 + 1, Replica: i%2 + 1, Addr: addr, c: c}
		admin := openClickHouse(t, addr, "")
		if err := admin.Ping(ctx); err != nil {
			t.Fatalf("clickhouse cluster node %s at %s does not answer (%v): %s", n.Name, addr, err, howToStartCluster)
		}
		_ = admin.Close()
		c.Nodes = append(c.Nodes, n)
	}
	c.Exec(ctx, c.Nodes[0], "CREATE DATABASE "+c.Database+" ON CLUSTER "+c.Cluster)
	for _, n := range c.Nodes {
		n.Conn = openClickHouse(t, n.Addr, c.Database)
	}
	t.Cleanup(c.cleanup)
	return c
}

func openClickHouse(t testing.TB, addr, database string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: database},
		DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clickhouse %s: %v", addr, err)
	}
	return conn
}

func (c *ClickHouseCluster) cleanup() {
	units := []string{}
	if c.down["zookeeper"] {
		units = append(units, "zookeeper")
	}
	for _, n := range c.Nodes {
		if c.down[n.Name] {
			units = append(units, "clickhouse-"+n.Name)
		}
	}
	if len(units) > 0 {
		if out, err := c.sh.try(append([]string{"up"}, units...)...); err != nil {
			c.t.Errorf("starting %v again after the test: %v\n%s", units, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range c.Nodes {
		_ = n.Conn.Close()
	}
	admin := openClickHouse(c.t, c.Nodes[0].Addr, "")
	defer admin.Close()
	if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+c.Database+" ON CLUSTER "+c.Cluster); err != nil {
		c.t.Logf("dropping %s on the cluster: %v", c.Database, err)
	}
}

// Node returns the node named name (s1r1 ...).
func (c *ClickHouseCluster) Node(name string) *ClickHouseNode {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("clickhouse cluster: no node %q", name)
	return nil
}

// Exec runs query on node n and fails the test on an error.
func (c *ClickHouseCluster) Exec(ctx context.Context, n *ClickHouseNode, query string, args ...any) {
	c.t.Helper()
	conn := n.Conn
	if conn == nil { // before the test's database exists
		conn = openClickHouse(c.t, n.Addr, "")
		defer conn.Close()
	}
	if err := conn.Exec(ctx, query, args...); err != nil {
		c.t.Fatalf("%s on %s: %v", query, n.Name, err)
	}
}

// SessionConn returns a connection to node n (the test's database) with settings SET on it, closed when the test
// ends. It holds one connection, so the settings stay with every query. Use it for INSERT settings: ClickHouse
// 18.16 ignores settings sent with an INSERT whose rows come from the client (every clickhouse-go batch; the
// INSERT ... SELECT of Exec honours them), so clickhouse.WithSettings(insert_distributed_sync or insert_quorum)
// on a batch silently does nothing there. It does not survive a restart of the server (the new connection has
// none of the settings): open another.
func (n *ClickHouseNode) SessionConn(settings map[string]any) driver.Conn {
	n.c.t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{n.Addr}, Auth: clickhouse.Auth{Database: n.c.Database},
		DialTimeout: 5 * time.Second, MaxOpenConns: 1, MaxIdleConns: 1})
	if err != nil {
		n.c.t.Fatalf("clickhouse %s: %v", n.Addr, err)
	}
	n.c.t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for k, v := range settings {
		if err := conn.Exec(ctx, fmt.Sprintf("SET %s = %v", k, v)); err != nil {
			n.c.t.Fatalf("SET %s = %v on %s: %v", k, v, n.Name, err)
		}
	}
	return conn
}

// Count returns SELECT count() FROM table (in the test's database) on node n.
func (n *ClickHouseNode) Count(ctx context.Context, table string) (uint64, error) {
	var count uint64
	err := n.Conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&count)
	return count, err
}

// Kill SIGKILLs the server and returns once the process is gone.
func (n *ClickHouseNode) Kill() { n.c.t.Helper(); n.c.down[n.Name] = true; n.c.unit("kill", n.Name) }

// Stop stops the server with SIGTERM and waits until it has exited.
func (n *ClickHouseNode) Stop() { n.c.t.Helper(); n.c.down[n.Name] = true; n.c.unit("down", n.Name) }

// Start starts the server again on its data and waits until it answers and has its ZooKeeper session. ZooKeeper
// must be up: 18.16 exits at start when a replicated table cannot reach it.
func (n *ClickHouseNode) Start() { n.c.t.Helper(); n.c.unit("up", n.Name); delete(n.c.down, n.Name) }

func (c *ClickHouseCluster) unit(verb, node string) {
	c.t.Helper()
	c.sh.run(c.t, verb, "clickhouse-"+node)
}

// StopZooKeeper stops ZooKeeper (SIGTERM) and waits until it has exited; replicated tables turn read-only.
func (c *ClickHouseCluster) StopZooKeeper() {
	c.t.Helper()
	c.down["zookeeper"] = true
	c.sh.run(c.t, "down", "zookeeper")
}

// KillZooKeeper SIGKILLs ZooKeeper.
func (c *ClickHouseCluster) KillZooKeeper() {
	c.t.Helper()
	c.down["zookeeper"] = true
	c.sh.run(c.t, "kill", "zookeeper")
}

// StartZooKeeper starts ZooKeeper again on its data and waits until it serves.
func (c *ClickHouseCluster) StartZooKeeper() {
	c.t.Helper()
	c.sh.run(c.t, "up", "zookeeper")
	delete(c.down, "zookeeper")
}

// WaitCount polls count() of table on node n until it is want, failing the test after timeout.
func (n *ClickHouseNode) WaitCount(table string, want uint64, timeout time.Duration) {
	n.c.t.Helper()
	var got uint64
	err := pollUntil(context.Background(), timeout, func(ctx context.Context) error {
		var err error
		if got, err = n.Count(ctx, table); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("count %d", got)
		}
		return nil
	})
	if err != nil {
		n.c.t.Fatalf("%s on %s: want %d rows, not after %s: %v", table, n.Name, want, timeout, err)
	}
}
