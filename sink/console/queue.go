package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/signalstage/signalstage/sink"
)

// queueLimit is the most rows the queue page shows at once; the filter narrows the rest. Filtering, sorting and
// the limit run in ClickHouse, so a tenant with 10,000 event names sends only this many rows (and samples) over.
const queueLimit = 200

// sampleCut bounds the sample payload shown per row.
const sampleCut = 4096

// queueRow is one row of sink/queries/signal_queue.sql as the page shows it.
type queueRow struct {
	Source, Type, Event   string
	Signals24h, Signals7d uint64
	FirstSeen, LastSeen   string
	RuleID, MappedName    string
	Mapped                bool
	Sample                string
	Spark                 []uint64 // signals per hour, the last 24 hours, oldest first
	DraftURL              string
}

// queueSorts are the columns the queue sorts by (the URL's sort parameter → SQL).
var queueSorts = map[string]string{
	"event": "event", "source": "source", "type": "type", "signals_24h": "signals_24h", "signals_7d": "signals_7d",
	"first_seen": "first_seen", "last_seen": "last_seen", "mapped": "mapped",
}

// queueFilter is what the queue page's form selects.
type queueFilter struct {
	Tenant, Q, Mapped, Sort, Dir string
	// Exact selects one row (source, type, event) instead of Q; the draft page uses it.
	Source, Type, Event string
}

func (f queueFilter) where() string {
	var conds []string
	if f.Q != "" {
		q := sink.QuoteString(f.Q)
		conds = append(conds, fmt.Sprintf("(positionCaseInsensitive(event, %s) > 0 OR positionCaseInsensitive(source, %s) > 0 "+
			"OR positionCaseInsensitive(type, %s) > 0 OR positionCaseInsensitive(latest_mapped_name, %s) > 0)", q, q, q, q))
	}
	switch f.Mapped {
	case "yes":
		conds = append(conds, "mapped = 1")
	case "no":
		conds = append(conds, "mapped = 0")
	}
	if f.Event != "" {
		conds = append(conds, fmt.Sprintf("source = %s AND type = %s AND event = %s",
			sink.QuoteString(f.Source), sink.QuoteString(f.Type), sink.QuoteString(f.Event)))
	}
	if len(conds) == 0 {
		return "1"
	}
	return strings.Join(conds, " AND ")
}

// queue runs the signal queue query for f.Tenant with f's filter, sort and limit applied around it.
func (s *Server) queue(ctx context.Context, f queueFilter, limit int) ([]queueRow, bool, error) {
	q, err := sink.QueryByName("signal_queue")
	if err != nil {
		return nil, false, err
	}
	inner, err := q.Render(map[string]string{"tenant": f.Tenant})
	if err != nil {
		return nil, false, err
	}
	col, ok := queueSorts[f.Sort]
	if !ok {
		col = "signals_7d"
	}
	dir := "DESC"
	if f.Dir == "asc" {
		dir = "ASC"
	}
	sql := fmt.Sprintf("SELECT source, type, event, toUInt64(signals_24h), toUInt64(signals_7d), toString(first_seen), "+
		"toString(last_seen), latest_rule_id, latest_mapped_name, toUInt8(mapped), substring(sample_payload, 1, %d) "+
		"FROM (%s) WHERE %s ORDER BY %s %s, source, type, event LIMIT %d", sampleCut, inner, f.where(), col, dir, limit+1)
	rows, err := s.ch.Query(ctx, sql)
	if err != nil {
		return nil, false, fmt.Errorf("querying the signal queue: %w", err)
	}
	defer rows.Close()
	var out []queueRow
	for rows.Next() {
		var r queueRow
		var mapped uint8
		if err := rows.Scan(&r.Source, &r.Type, &r.Event, &r.Signals24h, &r.Signals7d, &r.FirstSeen, &r.LastSeen,
			&r.RuleID, &r.MappedName, &mapped, &r.Sample); err != nil {
			return nil, false, fmt.Errorf("reading the signal queue: %w", err)
		}
		r.Mapped = mapped == 1
		r.DraftURL = "/rules/draft?" + url.Values{"tenant": {f.Tenant}, "source": {r.Source}, "type": {r.Type}, "event": {r.Event}}.Encode()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading the signal queue: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// sparklines fills each row's hourly volume of the last 24 hours from signal_queue_minute (exact: distinct
// signals per minute; a signal has one event time, so the hours add up).
func (s *Server) sparklines(ctx context.Context, tenant string, rows []queueRow) error {
	if len(rows) == 0 {
		return nil
	}
	idx := map[[3]string]int{}
	tuples := make([]string, len(rows))
	for i, r := range rows {
		idx[[3]string{r.Source, r.Type, r.Event}] = i
		tuples[i] = fmt.Sprintf("(%s, %s, %s)", sink.QuoteString(r.Source), sink.QuoteString(r.Type), sink.QuoteString(r.Event))
		rows[i].Spark = make([]uint64, 24)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	from := now.Add(-23 * time.Hour)
	sql := fmt.Sprintf("SELECT source, type, event, toUInt32(intDiv(toUInt32(minute) - %d, 3600)) AS h, toUInt64(sum(signals)) "+
		"FROM signal_queue_minute WHERE tenant = %s AND minute >= toDateTime(%d) AND (source, type, event) IN (%s) "+
		"GROUP BY source, type, event, h", from.Unix(), sink.QuoteString(tenant), from.Unix(), strings.Join(tuples, ", "))
	res, err := s.ch.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("querying queue volume: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var src, typ, ev string
		var h uint32
		var n uint64
		if err := res.Scan(&src, &typ, &ev, &h, &n); err != nil {
			return fmt.Errorf("reading queue volume: %w", err)
		}
		if i, ok := idx[[3]string{src, typ, ev}]; ok && h < 24 {
			rows[i].Spark[h] = n
		}
	}
	return res.Err()
}

// tenants lists the tenants that have signals.
func (s *Server) tenants(ctx context.Context) ([]string, error) {
	rows, err := s.ch.Query(ctx, "SELECT DISTINCT tenant FROM signal_volume_minute ORDER BY tenant LIMIT 1000")
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *Server) queuePage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	q := r.URL.Query()
	f := queueFilter{Tenant: q.Get("tenant"), Q: strings.TrimSpace(q.Get("q")), Mapped: q.Get("mapped"),
		Sort: q.Get("sort"), Dir: q.Get("dir")}
	tenants, err := s.tenants(ctx)
	if err != nil {
		s.fail(w, sess, err)
		return
	}
	tenants = sess.visible(tenants)
	if f.Tenant == "" && len(tenants) > 0 {
		f.Tenant = tenants[0]
	}
	if _, ok := queueSorts[f.Sort]; !ok {
		f.Sort, f.Dir = "signals_7d", "desc"
	}
	var rows []queueRow
	var more bool
	if f.Tenant != "" {
		if rows, more, err = s.queue(ctx, f, queueLimit); err == nil {
			err = s.sparklines(ctx, f.Tenant, rows)
		}
		if err != nil {
			s.fail(w, sess, err)
			return
		}
	}
	sortURL := func(col string) string {
		dir := "desc"
		if f.Sort == col && f.Dir != "asc" {
			dir = "asc"
		}
		return "/queue?" + url.Values{"tenant": {f.Tenant}, "q": {f.Q}, "mapped": {f.Mapped}, "sort": {col}, "dir": {dir}}.Encode()
	}
	s.render(w, http.StatusOK, "queue", sess, map[string]any{
		"Tenants": tenants, "F": f, "Rows": rows, "More": more, "Limit": queueLimit, "SortURL": sortURL,
		"Flash": q.Get("applied"),
	})
}
