package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouse is a test's handle on the real ClickHouse server: a database of its own, dropped when the test ends.
type ClickHouse struct {
	Addr     string
	Database string
	// Conn is connected with Database as its default database.
	Conn driver.Conn
}

// NewClickHouse connects to the server, fails the test if it does not answer, and creates a unique database.
func NewClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	c := &ClickHouse{Addr: ClickHouseAddr(), Database: uniqueName(t, 40)}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{c.Addr}, DialTimeout: 5 * time.Second})
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("clickhouse at %s does not answer (%v): %s", c.Addr, err, howToStart)
	}
	if err := admin.Exec(ctx, "CREATE DATABASE "+c.Database); err != nil {
		t.Fatalf("creating database %s: %v", c.Database, err)
	}
	c.Conn, err = clickhouse.Open(&clickhouse.Options{Addr: []string{c.Addr}, Auth: clickhouse.Auth{Database: c.Database},
		DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Conn.Close()
		_ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+c.Database)
		_ = admin.Close()
	})
	return c
}
