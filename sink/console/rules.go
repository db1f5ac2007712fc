package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/signalstage/signalstage/schemas/rules"
)

// mapTargets are the map targets the draft form offers, in order.
var mapTargets = []string{rules.TargetEmail, rules.TargetName, rules.TargetCompany, rules.TargetTitle}

// blankConditions is how many empty condition rows the form adds after the pre-filled ones.
const blankConditions = 2

// draftForm is the rule form's state: the rule, the sample's paths to choose from and the errors per field
// (keyed by rules.FieldError's Field: id, match.event, match.conditions[0].value, map.email).
type draftForm struct {
	Tenant     string
	Rule       rules.Rule
	Conditions []rules.Condition
	Paths      []rules.PathSample
	Targets    []string
	Errors     map[string]string
	Other      []string // errors for fields the form has no input for
	Operators  []string
	Back       string
}

func (s *Server) draftPage(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	f := queueFilter{Tenant: q.Get("tenant"), Source: q.Get("source"), Type: q.Get("type"), Event: q.Get("event")}
	if f.Tenant == "" || f.Event == "" {
		http.Error(w, "tenant, source, type and event are required", http.StatusBadRequest)
		return
	}
	rows, _, err := s.queue(r.Context(), f, 1)
	if err != nil {
		s.fail(w, sess, err)
		return
	}
	if len(rows) == 0 {
		http.Error(w, "no such row in the signal queue of the last 7 days", http.StatusNotFound)
		return
	}
	row := rows[0]
	// The same input `processor rules suggest` takes: a queue row with its sample.
	sample, _ := json.Marshal(map[string]any{"tenant": f.Tenant, "source": row.Source, "type": row.Type,
		"event": row.Event, "sample_payload": row.Sample})
	sug, err := rules.Suggest(sample, f.Tenant)
	if err != nil {
		s.fail(w, sess, fmt.Errorf("drafting a rule from the sample: %w", err))
		return
	}
	s.renderDraft(w, http.StatusOK, sess, sug.Rule, sug.Paths, nil)
}

func (s *Server) renderDraft(w http.ResponseWriter, status int, sess *session, r rules.Rule, paths []rules.PathSample, verr error) {
	// The rule's own paths are offered too (an edited rule has no sample; a draft's map may name a path the
	// sample lacks).
	have := map[string]bool{}
	for _, p := range paths {
		have[p.Path] = true
	}
	for _, t := range mapTargets {
		if p := r.Map[t]; p != "" && !have[p] {
			have[p] = true
			paths = append(paths, rules.PathSample{Path: p})
		}
	}
	d := draftForm{Tenant: r.Tenant, Rule: r, Paths: paths, Targets: mapTargets, Errors: map[string]string{},
		Operators: rules.Operators, Conditions: append(append([]rules.Condition(nil), r.Match.Conditions...), make([]rules.Condition, blankConditions)...),
		Back: "/queue?" + url.Values{"tenant": {r.Tenant}}.Encode()}
	known := map[string]bool{"tenant": true, "id": true, "name": true, "signal": true, "priority": true, "match.source": true,
		"match.type": true, "match.event": true, "match.url": true}
	for i := range d.Conditions {
		for _, p := range []string{"path", "op", "value"} {
			known[fmt.Sprintf("match.conditions[%d].%s", i, p)] = true
		}
	}
	for _, t := range mapTargets {
		known["map."+t] = true
	}
	for _, e := range flatten(verr) {
		var fe *rules.FieldError
		if errors.As(e, &fe) && known[fe.Field] {
			msg := fe.Err.Error()
			if fe.Msg != "" {
				msg += ": " + fe.Msg
			}
			d.Errors[fe.Field] = msg
		} else {
			d.Other = append(d.Other, e.Error())
		}
	}
	s.render(w, status, "draft", sess, map[string]any{"D": d})
}

// flatten returns the errors errors.Join put together (or err alone).
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// ruleFromForm reads the draft form back into a rule; the paths the form offered come back as hidden fields.
func ruleFromForm(r *http.Request) (rules.Rule, []rules.PathSample) {
	f := r.PostForm
	ru := rules.Rule{Tenant: f.Get("tenant"), ID: strings.TrimSpace(f.Get("id")), Name: f.Get("name"),
		Enabled: f.Get("enabled") == "on", Signal: f.Get("signal"),
		Match: rules.Match{Source: f.Get("source"), Type: f.Get("type"), Event: f.Get("event"), URL: f.Get("url")}}
	if p, err := strconv.ParseInt(strings.TrimSpace(f.Get("priority")), 10, 32); err == nil {
		ru.Priority = int32(p)
	}
	paths, ops, values := f["cond_path"], f["cond_op"], f["cond_value"]
	for i := range paths {
		if strings.TrimSpace(paths[i]) == "" {
			continue // a blank row
		}
		c := rules.Condition{Path: strings.TrimSpace(paths[i])}
		if i < len(ops) {
			c.Op = ops[i]
		}
		if i < len(values) {
			c.Value = rules.Value(values[i])
		}
		ru.Match.Conditions = append(ru.Match.Conditions, c)
	}
	for _, t := range mapTargets {
		if p := strings.TrimSpace(f.Get("map_" + t)); p != "" {
			if ru.Map == nil {
				ru.Map = map[string]string{}
			}
			ru.Map[t] = p
		}
	}
	var samples []rules.PathSample
	for i, p := range f["sample_path"] {
		ps := rules.PathSample{Path: p}
		if v := f["sample_value"]; i < len(v) {
			ps.Value = v[i]
		}
		samples = append(samples, ps)
	}
	return ru, samples
}

func (s *Server) applyRule(w http.ResponseWriter, r *http.Request, sess *session) {
	ru, paths := ruleFromForm(r)
	// Validate first to show every problem at its field; Apply validates again (the processor's own
	// validation, the same code as `processor rules apply`) and publishes to signals.rules.
	if err := rules.Validate(&ru); err != nil {
		s.renderDraft(w, http.StatusUnprocessableEntity, sess, ru, paths, err)
		return
	}
	if err := s.pub.Apply(r.Context(), ru); err != nil {
		if errors.Is(err, rules.ErrInvalid) {
			s.renderDraft(w, http.StatusUnprocessableEntity, sess, ru, paths, err)
			return
		}
		s.fail(w, sess, err)
		return
	}
	s.log.Info("console: rule applied", "tenant", ru.Tenant, "rule", ru.ID)
	http.Redirect(w, r, "/queue?"+url.Values{"tenant": {ru.Tenant}, "applied": {ru.ID}}.Encode(), http.StatusSeeOther)
}
