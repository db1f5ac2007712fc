package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"
)

// EnvSchemaRegistry is the Schema Registry's URL (Confluent's API), exported by `services.sh env`. It is not
// SIGNALSTAGE_SCHEMA_REGISTRY, the stages' own variable: a stage a test runs writes the registry wire format only
// when the test asks for it.
const EnvSchemaRegistry = "SIGNALSTAGE_REGISTRY_URL"

// EnvRegistryTests selects the registry suites (tests named TestRegistry*): `make test-registry` sets it, after
// `services.sh up registry`. Without it they skip, so `make test` needs no registry (building one from nothing
// takes minutes).
const EnvRegistryTests = "SIGNALSTAGE_REGISTRY"

// DefaultSchemaRegistry matches services.sh: Apicurio Registry's Confluent-compatible API on 127.0.0.1:8081.
const DefaultSchemaRegistry = "http://127.0.0.1:8081/apis/ccompat/v7"

// SchemaRegistryURL returns SIGNALSTAGE_SCHEMA_REGISTRY, else the default.
func SchemaRegistryURL() string { return getenv(EnvSchemaRegistry, DefaultSchemaRegistry) }

// NewSchemaRegistry returns the URL of the running Schema Registry (the real server services.sh runs), failing
// the test when it does not answer. Its schemas are shared by every test: subjects are named after topics, and
// each test's topics have a prefix of their own.
func NewSchemaRegistry(t testing.TB) string {
	t.Helper()
	if os.Getenv(EnvRegistryTests) != "1" {
		t.Skipf("registry suite: run it with `make test-registry` (%s=1)", EnvRegistryTests)
	}
	url := SchemaRegistryURL()
	if err := registryAnswers(url); err != nil {
		t.Fatalf("schema registry at %s: %v; start it with `bash testenv/services.sh up registry` (make test starts it)", url, err)
	}
	return url
}

func registryAnswers(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/subjects", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /subjects: HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}
