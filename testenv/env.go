package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Environment variables that `make test` and `testenv/services.sh env` export.
const (
	EnvKafkaBrokers   = "SIGNALSTAGE_KAFKA_BROKERS"
	EnvClickHouseAddr = "SIGNALSTAGE_CLICKHOUSE_ADDR"
	EnvClickHouseHTTP = "SIGNALSTAGE_CLICKHOUSE_HTTP"
)

// Defaults match services.sh.
const (
	DefaultKafkaBrokers   = "127.0.0.1:9092"
	DefaultClickHouseAddr = "127.0.0.1:9000"
	DefaultClickHouseHTTP = "http://127.0.0.1:8123"
)

const howToStart = "start the services with `make up` (or run the tests with `make test`, which starts them); " +
	"`make status` shows their state and log files"

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// KafkaBrokers returns the broker addresses from SIGNALSTAGE_KAFKA_BROKERS (comma separated), else the default.
func KafkaBrokers() []string { return strings.Split(getenv(EnvKafkaBrokers, DefaultKafkaBrokers), ",") }

// ClickHouseAddr returns the native-protocol address from SIGNALSTAGE_CLICKHOUSE_ADDR, else the default.
func ClickHouseAddr() string { return getenv(EnvClickHouseAddr, DefaultClickHouseAddr) }

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// uniqueName returns a name made of the test's name and random hex, safe as a topic prefix or database name.
func uniqueName(t testing.TB, maxName int) string {
	n := strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "_"))
	if len(n) > maxName {
		n = n[:maxName]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t_" + strings.Trim(n, "_") + "_" + hex.EncodeToString(b[:])
}
