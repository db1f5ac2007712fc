package rules

import (
	"os"
	"strings"
	"testing"
)

// The example in README.md is a valid rule.
func TestReadmeExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	doc, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml example")
	}
	rs, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || len(rs[0].Match.Conditions) != 3 || rs[0].Map["fields.plan"] != "properties.plan" {
		t.Fatalf("example parsed as %+v", rs)
	}
}
