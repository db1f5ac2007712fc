package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestClickHouseServerRestart stops a real ClickHouse server mid-stream and starts it again: the sink retries,
// pauses fetching, commits nothing it has not inserted, and afterwards every row is there once.
// (TestClickHouseDownMidStream cuts the network instead; this one takes the server process down.)
func TestClickHouseServerRestart(t *testing.T) {
	e := &env{t: t, k: testenv.NewKafka(t, 3)}
	srv := testenv.NewPrivateClickHouse(t)
	e.ch = &testenv.ClickHouse{Addr: srv.Addr, Database: "signalstage_restart"} // the sink creates the database
	cfg := e.config()
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cfg.InsertTimeout = 3 * time.Second
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	e.start(cfg)

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr}, Auth: clickhouse.Auth{Database: cfg.Database}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func() (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM signals FINAL").Scan(&n)
		return n, err
	}
	waitRows := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			n, err := count()
			if err == nil && n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("signals FINAL: %d rows (err %v), want %d", n, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	e.produce(e.signalRecords(0, 300)...)
	waitRows(300)

	srv.Stop()
	e.produce(e.signalRecords(300, 700)...)
	waitPaused(t, reg, 2, 60*time.Second)
	if got := e.committed(e.k.Topic(schemas.TopicResolved)); got > 300 {
		t.Errorf("committed %d offsets while the server was down, want at most the 300 inserted", got)
	}

	srv.Start()
	e.produce(e.signalRecords(700, 800)...)
	waitRows(800)
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 800, 60*time.Second)
}
