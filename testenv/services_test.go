package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestServicesAreReal proves the suite talks to a real Apache Kafka broker (KRaft, configured by services.sh) and a
// real ClickHouse server, not an embedded fake: `make test` prints its log lines.
func TestServicesAreReal(t *testing.T) {
	k := NewKafka(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	meta, err := k.Admin.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Brokers) == 0 {
		t.Fatal("no brokers in metadata")
	}
	cfgs, err := k.Admin.DescribeBrokerConfigs(ctx, meta.Brokers[0].NodeID)
	if err != nil {
		t.Fatalf("describing broker configs (kfake does not serve them): %v", err)
	}
	rc, err := cfgs.On("1", nil)
	if err != nil {
		t.Fatalf("broker 1 configs: %v", err)
	}
	roles := ""
	for _, c := range rc.Configs {
		if c.Key == "process.roles" {
			roles = c.MaybeValue()
		}
	}
	if roles != "broker,controller" {
		t.Fatalf("process.roles = %q: not the KRaft broker services.sh starts", roles)
	}
	versions, err := k.Admin.ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var guess string
	versions.Each(func(v kadm.BrokerApiVersions) { guess = v.VersionGuess() })
	t.Logf("kafka: %s, cluster %s, controller %d, process.roles=%s, version guess %s",
		k.Brokers, meta.Cluster, meta.Controller, roles, guess)

	ch := NewClickHouse(t)
	var version string
	if err := ch.Conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("clickhouse: %s, server version %s", ch.Addr, version)
}
