package rules

import (
	"reflect"
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		name, sample, tenant string
		want                 Rule
	}{
		{"segment track form", `{"type":"track","event":"Form Submitted","anonymousId":"a1","messageId":"m1",
			"properties":{"form_name":"demo","email":"jane@example.com","form_id":"f-123","page_url":"https://x.io/demo","seats":5},
			"context":{"traits":{"company":"Example Inc"}}}`, "acme",
			Rule{Tenant: "acme", ID: "form-submitted", Name: "Form Submitted", Priority: 10, Enabled: true,
				Match: Match{Source: "segment", Type: "track", Event: "Form Submitted",
					Conditions: []Condition{{Path: "properties.form_name", Op: OpEq, Value: "demo"}}},
				Signal: "Form Submitted", Map: map[string]string{"email": "properties.email", "company": "context.traits.company"}}},
		{"segment identify traits", `{"type":"identify","userId":"u1","messageId":"m2",
			"traits":{"email":"j@x.io","name":"Jane","company":"X","title":"CTO"}}`, "acme",
			Rule{Tenant: "acme", ID: "identify", Name: "identify", Priority: 10, Enabled: true,
				Match:  Match{Source: "segment", Type: "identify", Event: "identify"},
				Signal: "identify", Map: map[string]string{"email": "traits.email", "name": "traits.name", "company": "traits.company", "title": "traits.title"}}},
		{"segment page", `{"type":"page","anonymousId":"a1","messageId":"m3","name":"Pricing",
			"properties":{"url":"https://x.io/pricing/?utm_source=ad","title":"Pricing"}}`, "acme",
			Rule{Tenant: "acme", ID: "page-pricing", Name: "Page /pricing", Priority: 10, Enabled: true,
				Match: Match{Source: "segment", Type: "page", URL: "/pricing"}, Signal: "Viewed /pricing"}},
		{"queue row with payload text", `{"tenant":"acme","source":"segment","event":"Demo Requested","count_24h":3,
			"sample_payload":"{\"type\":\"track\",\"event\":\"Demo Requested\",\"anonymousId\":\"a\",\"messageId\":\"m\",\"properties\":{\"plan\":\"pro\",\"email\":\"a@b.io\"}}"}`, "",
			Rule{Tenant: "acme", ID: "demo-requested", Name: "Demo Requested", Priority: 10, Enabled: true,
				Match: Match{Source: "segment", Type: "track", Event: "Demo Requested",
					Conditions: []Condition{{Path: "properties.plan", Op: OpEq, Value: "pro"}}},
				Signal: "Demo Requested", Map: map[string]string{"email": "properties.email"}}},
		{"signal queue row as ClickHouse JSONEachRow gives it", `{"source":"webhook","type":"webhook","event":"signup","signals_24h":"3",
			"signals_7d":"10","first_seen":"2026-11-29 10:00:00","last_seen":"2026-11-30 05:00:00","latest_rule_id":"","latest_mapped_name":"",
			"mapped":0,"sample_payload":"{\"event\":\"signup\",\"plan\":\"trial\",\"user\":{\"email\":\"a@b.io\"}}"}`, "acme",
			Rule{Tenant: "acme", ID: "signup", Name: "signup", Priority: 10, Enabled: true,
				Match: Match{Source: "webhook", Type: "webhook", Event: "signup"}, Signal: "signup",
				Map: map[string]string{"email": "user.email"}}},
		{"generic webhook", `{"event":"invoice.paid","data":{"customer_email":"x@y.io"}}`, "acme",
			Rule{Tenant: "acme", ID: "invoice-paid", Name: "invoice.paid", Priority: 10, Enabled: true,
				Match: Match{Source: "webhook", Type: "webhook", Event: "invoice.paid"}, Signal: "invoice.paid",
				Map: map[string]string{"email": "data.customer_email"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sg, err := Suggest([]byte(tc.sample), tc.tenant)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sg.Rule, tc.want) {
				t.Fatalf("draft\n got %+v\nwant %+v", sg.Rule, tc.want)
			}
			y, err := sg.YAML()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(y)
			if err != nil || !reflect.DeepEqual(back[0], tc.want) {
				t.Fatalf("YAML draft does not parse back (%v):\n%s", err, y)
			}
		})
	}
}

func TestSuggestListsPaths(t *testing.T) {
	sg, err := Suggest([]byte(`{"type":"track","event":"Order","anonymousId":"a","messageId":"m",
		"properties":{"products":[{"sku":"S1"},{"sku":"S2"}],"n":null},"context":{"page":{"url":"https://x.io/a"}}}`), "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range sg.Paths {
		got = append(got, p.Path+"="+p.Value)
	}
	want := "anonymousId=a context.page.url=https://x.io/a event=Order messageId=m properties.products.0.sku=S1 properties.products.1.sku=S2 type=track"
	if strings.Join(got, " ") != want {
		t.Fatalf("paths %v", got)
	}
	y, _ := sg.YAML()
	if !strings.Contains(string(y), `#   - {path: properties.products.1.sku, op: eq, value: "S2"}`) {
		t.Fatalf("yaml lacks path comments:\n%s", y)
	}
}

func TestSuggestRefusesNonObject(t *testing.T) {
	if _, err := Suggest([]byte(`[1,2]`), "acme"); err == nil {
		t.Fatal("accepted a list")
	}
	if _, err := Suggest([]byte(`{"type":"track","event":"x"}`), ""); err == nil {
		t.Fatal("a draft without tenant is not valid")
	}
}
