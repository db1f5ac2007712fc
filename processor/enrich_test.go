package processor

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// Enrichment a rule maps (name, company, title) reaches the lead's identity, not only the signal's Mapped: the
// identity's traits (merged over what the visitor's traits were; the rule wins for its fields), so the link on
// the identities topic carries them (the sink's identities table) and the visitor's later traitless signals
// carry them too.
func TestRuleEnrichmentReachesTheIdentity(t *testing.T) {
	r := newRig(t, func(c *CoreConfig) { c.Mapper = staticMapper(t, demoRule) })
	traitsOf := func(s string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("traits %q: %v", s, err)
		}
		return m
	}
	demo := `{"type":"track","anonymousId":%q,"messageId":%q,"event":"Form Submitted","properties":{"form_name":"demo","work_email":"%s","company":"Acme","title":"CTO"}}`

	// A new visitor's demo request: linked by the rule's email, with the rule's company and title.
	r.event("acme", fmt.Sprintf(demo, "v2", "f2", "jane@example.com"))
	if len(r.em.links) != 1 {
		t.Fatalf("links: %+v", r.em.links)
	}
	if tr := traitsOf(r.em.links[0].Traits); tr["company"] != "Acme" || tr["title"] != "CTO" {
		t.Fatalf("the link's traits %s, want the rule's company and title", r.em.links[0].Traits)
	}
	if got := r.event("acme", track("v2", "", "Later", "")); got[0].Email != "jane@example.com" || traitsOf(got[0].Traits)["company"] != "Acme" {
		t.Fatalf("v2's later signal: %q traits %s", got[0].Email, got[0].Traits)
	}

	// A visitor identified before (name, company from its identify) sends the form: the rule's fields are merged in.
	r.event("acme", `{"type":"identify","anonymousId":"v3","messageId":"i3","traits":{"email":"bob@b.io","name":"Bob","company":"Old Co"}}`)
	n := len(r.em.links)
	r.now = r.now.Add(time.Second) // links are ordered by event time: the form comes after the identify
	r.event("acme", fmt.Sprintf(demo, "v3", "f3", "bob@b.io"))
	if len(r.em.links) != n+1 {
		t.Fatalf("no link with the rule's enrichment for the linked visitor: %+v", r.em.links[n:])
	}
	if tr := traitsOf(r.em.links[n].Traits); tr["name"] != "Bob" || tr["company"] != "Acme" || tr["title"] != "CTO" {
		t.Fatalf("merged traits %s, want name Bob (identify), company Acme and title CTO (rule)", r.em.links[n].Traits)
	}
	// The same form again (a new message) changes nothing: no churn on the identities topic.
	r.now = r.now.Add(time.Second)
	r.event("acme", fmt.Sprintf(demo, "v3", "f3-again", "bob@b.io"))
	if len(r.em.links) != n+1 {
		t.Fatalf("an unchanged enrichment emitted another link: %+v", r.em.links[n+1:])
	}

	// A form without the email field, from a linked visitor: the rule's company reaches that lead's identity.
	n = len(r.em.links)
	r.now = r.now.Add(time.Second)
	r.event("acme", `{"type":"track","anonymousId":"v2","messageId":"f4","event":"Form Submitted","properties":{"form_name":"demo","company":"NewCo"}}`)
	if len(r.em.links) != n+1 || r.em.links[n].Email != "jane@example.com" || traitsOf(r.em.links[n].Traits)["company"] != "NewCo" {
		t.Fatalf("enrichment of a visitor linked before: %+v", r.em.links[n:])
	}
	// And one from a visitor without a lead is kept for its link (here by the rule's email on a later form; an
	// identify's own traits would replace it, as they replace any traits known before).
	r.event("acme", `{"type":"track","anonymousId":"v5","messageId":"f5","event":"Form Submitted","properties":{"form_name":"demo","title":"VP"}}`)
	r.now = r.now.Add(time.Second)
	n = len(r.em.links)
	r.event("acme", `{"type":"track","anonymousId":"v5","messageId":"f6","event":"Form Submitted","properties":{"form_name":"demo","work_email":"v5@x.io"}}`)
	if len(r.em.links) != n+1 || traitsOf(r.em.links[n].Traits)["title"] != "VP" {
		t.Fatalf("enrichment before the link: %+v", r.em.links[n:])
	}
}
