package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		flag string
	}{
		{"event limit", Config{MaxEventBytes: 10}, "-max-event-bytes"},
		{"request under event", Config{MaxEventBytes: 1000, MaxRequestBytes: 500}, "-max-request-bytes"},
		{"retry after", Config{RetryAfter: time.Millisecond}, "-retry-after"},
		{"buffer bytes", Config{MaxBufferedBytes: 10}, "-max-buffered-bytes"},
		{"in flight", Config{MaxInFlight: -1}, "-max-in-flight"},
		{"partitions", Config{Partitions: -2}, "-partitions"},
		{"webhook under request", Config{MaxWebhookRequestBytes: 1000}, "-max-webhook-request-bytes"},
		{"in flight per key", Config{MaxInFlight: 10, MaxInFlightPerKey: 11}, "-max-in-flight-per-key"},
		{"memory per key", Config{MaxRequestMemoryPerKey: 1 << 20}, "-max-request-memory-per-key"},
		{"body grace", Config{BodyReadGrace: -time.Second}, "-body-read-grace"},
		{"replica id", Config{ReplicaID: "r|1"}, "-replica-id"},
		{"keys file", Config{KeysFile: "/nonexistent/keys.json"}, "-keys"},
		{"no keys file", Config{KeysFile: "none"}, "-keys: is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.cfg.KeysFile {
			case "":
				tc.cfg.KeysFile = "../testenv/dev-keys.json"
			case "none": // no -keys given: required, never defaulted to the development keys
				tc.cfg.KeysFile = ""
			}
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("err = %v, want it to name %s", err, tc.flag)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	good := HashSecret("s")
	for _, tc := range []struct {
		name, file, err string
	}{
		{"dev keys file", "", ""},
		{"no keys object", `{}`, `missing "keys"`},
		{"unknown field", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"signal-staging","colour":1}}}`, "unknown field"},
		{"no id", `{"keys":{"k":{"tenant":"t","endpoint_type":"signal-staging"}}}`, "no id"},
		{"no tenant", `{"keys":{"k":{"id":"a","endpoint_type":"signal-staging"}}}`, "no tenant"},
		{"pipe in tenant", `{"keys":{"k":{"id":"a","tenant":"a|b","endpoint_type":"signal-staging"}}}`, "must not contain"},
		{"no type", `{"keys":{"k":{"id":"a","tenant":"t"}}}`, "no endpoint_type"},
		{"bad hash", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"x","secret_hash":"md5:00"}}}`, "secret_hash must be"},
		{"duplicate id", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"x"},"l":{"id":"a","tenant":"t","endpoint_type":"x"}}}`, "used twice"},
		{"good hash", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"x","secret_hash":"` + good + `"}}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "../testenv/dev-keys.json"
			if tc.file != "" {
				path = filepath.Join(t.TempDir(), "k.json")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			keys, _, err := loadKeys(path)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.file == "" && (keys["dev-key"] == nil || keys["dev-key"].Tenant != "dev" || keys["dev-key"].EndpointType != EndpointSignalStaging) {
					t.Errorf("dev-key: %+v", keys["dev-key"])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if strings.Contains(err.Error(), `"k"`) || strings.Contains(err.Error(), `"l"`) {
				t.Errorf("error %q names an API key", err)
			}
		})
	}
	k := &Key{secretDigest: mustDigest(t, good)}
	if !k.checkSecret("s") || k.checkSecret("t") || k.checkSecret("") {
		t.Error("checkSecret")
	}
}

func mustDigest(t *testing.T, h string) []byte {
	t.Helper()
	keys, err := parseKeys([]byte(`{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"x","secret_hash":"` + h + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return keys["k"].secretDigest
}
