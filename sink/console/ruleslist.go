package console

import (
	"net/http"
	"net/url"
	"sort"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/rules"
)

// ruleSet reads the whole rules topic (schemas/rules.Read, applying records as the processors' watcher does):
// the rules as the processors will have them once they have read the topic.
func (s *Server) ruleSet(r *http.Request) (*rules.Catalog, error) {
	return rules.Read(r.Context(), rules.ReadConfig{Brokers: s.cfg.Sink.Brokers,
		Topic: s.cfg.Sink.Topics.Name(schemas.TopicRules), ClientOpts: s.cfg.Sink.KafkaConnOpts})
}

type ruleItem struct {
	Rule                rules.Rule
	EditURL, DeleteURL  string
	Conditions, Targets int
}

func (s *Server) rulesPage(w http.ResponseWriter, r *http.Request, sess *session) {
	set, err := s.ruleSet(r)
	if err != nil {
		s.fail(w, sess, err)
		return
	}
	tenants := sess.visible(set.Tenants())
	sort.Strings(tenants)
	tenant := r.URL.Query().Get("tenant")
	if tenant == "" && len(tenants) > 0 {
		tenant = tenants[0]
	}
	var items []ruleItem
	if tenant == "" {
		tenant = "-" // no rules visible: list none
	}
	for _, ru := range set.Rules(tenant) {
		q := url.Values{"tenant": {ru.Tenant}, "id": {ru.ID}}.Encode()
		items = append(items, ruleItem{Rule: ru, EditURL: "/rules/edit?" + q, DeleteURL: "/rules/delete?" + q,
			Conditions: len(ru.Match.Conditions), Targets: len(ru.Map)})
	}
	s.render(w, http.StatusOK, "rules", sess, map[string]any{"Tenants": tenants, "Tenant": tenant, "Items": items,
		"Deleted": r.URL.Query().Get("deleted")})
}

// ruleOr404 finds the rule the request names, or answers 404.
func (s *Server) ruleOr404(w http.ResponseWriter, r *http.Request, sess *session, tenant, id string) (rules.Rule, bool) {
	set, err := s.ruleSet(r)
	if err != nil {
		s.fail(w, sess, err)
		return rules.Rule{}, false
	}
	ru, ok := set.Rule(tenant, id)
	if !ok {
		http.Error(w, "no such rule", http.StatusNotFound)
	}
	return ru, ok
}

func (s *Server) editPage(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	if ru, ok := s.ruleOr404(w, r, sess, q.Get("tenant"), q.Get("id")); ok {
		s.renderDraft(w, http.StatusOK, sess, ru, nil, nil)
	}
}

func (s *Server) deletePage(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	if ru, ok := s.ruleOr404(w, r, sess, q.Get("tenant"), q.Get("id")); ok {
		s.render(w, http.StatusOK, "delete", sess, map[string]any{"Rule": ru,
			"Back": "/rules?" + url.Values{"tenant": {ru.Tenant}}.Encode()})
	}
}

// deleteRule writes the rule's tombstone (rules.Publisher.Delete, as `processor rules delete`).
func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request, sess *session) {
	tenant, id := r.PostFormValue("tenant"), r.PostFormValue("id")
	if err := s.pub.Delete(r.Context(), tenant, id); err != nil {
		s.fail(w, sess, err)
		return
	}
	s.log.Info("console: rule deleted", "tenant", tenant, "rule", id)
	http.Redirect(w, r, "/rules?"+url.Values{"tenant": {tenant}, "deleted": {id}}.Encode(), http.StatusSeeOther)
}
