package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/signalstage/signalstage/sink"
)

// leadRows bounds the timeline the lead page shows (oldest first, as lead_timeline.sql orders it).
const leadRows = 500

// leadQuery reads one lead's enrichment fields from the leads view.
var leadQuery = sink.Query{Name: "lead", SQL: "SELECT email, name, first_name, last_name, company, title, " +
	"arrayStringConcat(arrayMap(f -> concat(tupleElement(f, 1), '=', tupleElement(f, 2)), fields), ', ') AS all_fields, " +
	"updated_at FROM leads WHERE tenant = {tenant:String} AND email = {email:String}"}

// table is a query's answer as text cells, for the generic tables of the lead page.
type table struct {
	Columns []string
	Rows    [][]string
	Cut     bool
}

func (s *Server) runTable(ctx context.Context, q sink.Query, params map[string]string, limit int) (table, error) {
	res, err := q.Run(ctx, s.ch, params)
	if err != nil {
		return table{}, err
	}
	t := table{Columns: res.Columns}
	for i, row := range res.Rows {
		if i == limit {
			t.Cut = true
			break
		}
		cells := make([]string, len(row))
		for j, v := range row {
			cells[j] = cell(v)
		}
		t.Rows = append(t.Rows, cells)
	}
	return t, nil
}

func cell(v any) string {
	switch x := v.(type) {
	case time.Time:
		if x.IsZero() || x.Unix() <= 0 {
			return ""
		}
		return x.UTC().Format("2006-01-02 15:04:05")
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// leadPage shows a lead: its enrichment fields (leads), first touch (lead_first_touch.sql) and timeline of
// signals across its devices, anonymous history included (lead_timeline.sql).
func (s *Server) leadPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	tenant, email := r.URL.Query().Get("tenant"), strings.ToLower(strings.TrimSpace(r.URL.Query().Get("email")))
	tenants, err := s.tenants(ctx)
	if err != nil {
		s.fail(w, sess, err)
		return
	}
	tenants = sess.visible(tenants)
	if tenant == "" && len(tenants) > 0 {
		tenant = tenants[0]
	}
	data := map[string]any{"Tenants": tenants, "Tenant": tenant, "Email": email}
	if email != "" && tenant != "" {
		params := map[string]string{"tenant": tenant, "email": email}
		lead, err := s.runTable(ctx, leadQuery, params, 1)
		if err != nil {
			s.fail(w, sess, err)
			return
		}
		data["Lead"] = lead
		for key, name := range map[string]string{"FirstTouch": "lead_first_touch", "Timeline": "lead_timeline"} {
			q, err := sink.QueryByName(name)
			if err != nil {
				s.fail(w, sess, err)
				return
			}
			t, err := s.runTable(ctx, q, params, leadRows)
			if err != nil {
				s.fail(w, sess, err)
				return
			}
			data[key] = t
		}
	}
	s.render(w, http.StatusOK, "lead", sess, data)
}
