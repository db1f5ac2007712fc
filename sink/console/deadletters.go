package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/signalstage/signalstage/sink"
)

// deadLetterLimit is the most dead letters the page lists, and the most one redrive from the console sends.
const deadLetterLimit = 200

// dlFilter is the dead letters page's selection, turned into the -where of `sink redrive` (the same code runs).
type dlFilter struct {
	Tenant, Stage, Reason, Since string
	Pending                      bool     // only those not redriven yet (retries = 0)
	Positions                    []string // topic|partition|offset of the rows ticked, each a dead letter's key
	// Allowed limits the selection to these tenants (an operator's login); nil: every tenant.
	Allowed []string
}

func dlFilterFrom(v url.Values) dlFilter {
	return dlFilter{Tenant: v.Get("tenant"), Stage: v.Get("stage"), Reason: strings.TrimSpace(v.Get("reason")),
		Since: v.Get("since"), Pending: v.Get("pending") != "0", Positions: v["pos"]}
}

// values encodes f back into form or URL values.
func (f dlFilter) values() url.Values {
	v := url.Values{"tenant": {f.Tenant}, "stage": {f.Stage}, "reason": {f.Reason}, "since": {f.Since}, "pending": {"1"}}
	if !f.Pending {
		v.Set("pending", "0")
	}
	if len(f.Positions) > 0 {
		v["pos"] = f.Positions
	}
	return v
}

// where is f as a ClickHouse condition over dead_letters_v2's columns; every operand is quoted or parsed, so
// what an operator types never becomes SQL.
func (f dlFilter) where() (string, error) {
	conds := []string{"1"}
	if f.Allowed != nil {
		var quoted []string // an operator has at least one tenant (newAuth); dead letters without a tenant are the admin's
		for _, t := range f.Allowed {
			quoted = append(quoted, sink.QuoteString(t))
		}
		conds = append(conds, "tenant IN ("+strings.Join(quoted, ", ")+")")
	}
	if f.Tenant != "" {
		conds = append(conds, "tenant = "+sink.QuoteString(f.Tenant))
	}
	if f.Stage != "" {
		conds = append(conds, "stage = "+sink.QuoteString(f.Stage))
	}
	if f.Reason != "" {
		conds = append(conds, fmt.Sprintf("positionCaseInsensitive(reason, %s) > 0", sink.QuoteString(f.Reason)))
	}
	if f.Since != "" {
		at, err := time.Parse("2006-01-02T15:04", f.Since)
		if err != nil {
			return "", fmt.Errorf("failed since: %q is not a date and time (YYYY-MM-DDTHH:MM, UTC)", f.Since)
		}
		conds = append(conds, fmt.Sprintf("failed_at >= toDateTime(%d)", at.Unix()))
	}
	if f.Pending {
		conds = append(conds, "retries = 0")
	}
	if len(f.Positions) > 0 {
		var tuples []string
		for _, p := range f.Positions {
			parts := strings.Split(p, "|")
			if len(parts) != 3 {
				return "", fmt.Errorf("bad dead letter position %q", p)
			}
			part, err1 := strconv.ParseInt(parts[1], 10, 32)
			off, err2 := strconv.ParseInt(parts[2], 10, 64)
			if err1 != nil || err2 != nil {
				return "", fmt.Errorf("bad dead letter position %q", p)
			}
			tuples = append(tuples, fmt.Sprintf("(%s, %d, %d)", sink.QuoteString(parts[0]), part, off))
		}
		conds = append(conds, "(kafka_topic, kafka_partition, kafka_offset) IN ("+strings.Join(tuples, ", ")+")")
	}
	return strings.Join(conds, " AND "), nil
}

type dlRow struct {
	Tenant, Stage, Reason, Origin, FailedAt, Key, Payload, Pos string
	Retries                                                    uint32
}

func (s *Server) deadLettersPage(w http.ResponseWriter, r *http.Request, sess *session) {
	f := dlFilterFrom(r.URL.Query())
	f.Allowed = allowedList(sess)
	if r.URL.Query().Get("pending") == "" {
		f.Pending = true
	}
	where, err := f.where()
	if err != nil {
		s.render(w, http.StatusBadRequest, "deadletters", sess, map[string]any{"F": f, "Error": err.Error()})
		return
	}
	rows, err := s.ch.Query(r.Context(), fmt.Sprintf("SELECT tenant, stage, substring(reason, 1, 300), origin_topic, origin_partition, "+
		"origin_offset, toString(failed_at), substring(key, 1, 200), substring(payload, 1, 2048), retries, kafka_topic, kafka_partition, "+
		"kafka_offset FROM dead_letters_v2 FINAL WHERE %s ORDER BY failed_at DESC, kafka_topic, kafka_partition, kafka_offset LIMIT %d",
		where, deadLetterLimit+1))
	if err != nil {
		s.fail(w, sess, fmt.Errorf("querying dead letters: %w", err))
		return
	}
	defer rows.Close()
	var out []dlRow
	for rows.Next() {
		var d dlRow
		var op, kp int32
		var oo, ko int64
		var kt string
		if err := rows.Scan(&d.Tenant, &d.Stage, &d.Reason, &d.Origin, &op, &oo, &d.FailedAt, &d.Key, &d.Payload, &d.Retries,
			&kt, &kp, &ko); err != nil {
			s.fail(w, sess, fmt.Errorf("reading dead letters: %w", err))
			return
		}
		if d.Origin != "" {
			d.Origin = fmt.Sprintf("%s/%d@%d", d.Origin, op, oo)
		}
		d.Pos = fmt.Sprintf("%s|%d|%d", kt, kp, ko)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		s.fail(w, sess, fmt.Errorf("reading dead letters: %w", err))
		return
	}
	more := len(out) > deadLetterLimit
	if more {
		out = out[:deadLetterLimit]
	}
	s.render(w, http.StatusOK, "deadletters", sess, map[string]any{"F": f, "Rows": out, "More": more, "Limit": deadLetterLimit})
}

// redrive runs `sink redrive`'s code on the page's selection: mode preview is its -dry-run, mode send sends at
// most as many as the preview listed (new dead letters matching the selection since then wait for the next
// preview).
func (s *Server) redrive(w http.ResponseWriter, r *http.Request, sess *session) {
	f := dlFilterFrom(r.PostForm)
	f.Allowed = allowedList(sess)
	where, err := f.where()
	if err != nil {
		s.render(w, http.StatusBadRequest, "deadletters", sess, map[string]any{"F": f, "Error": err.Error()})
		return
	}
	send := r.PostFormValue("mode") == "send"
	limit := deadLetterLimit
	if n, err := strconv.Atoi(r.PostFormValue("limit")); send && err == nil && n > 0 && n < limit {
		limit = n
	}
	var listed []sink.Redriven
	res, err := sink.Redrive(r.Context(), s.cfg.Sink, sink.RedriveConfig{Where: where, Limit: limit, DryRun: !send},
		func(d sink.Redriven) { listed = append(listed, d) })
	if err != nil {
		s.fail(w, sess, fmt.Errorf("redrive (sent %d): %w", res.Sent, err))
		return
	}
	if send {
		s.log.Info("console: redrive", "where", where, "sent", res.Sent, "skipped", res.Skipped)
	}
	skipped := 0
	for _, n := range res.Skipped {
		skipped += n
	}
	s.render(w, http.StatusOK, "redrive", sess, map[string]any{"F": f, "Hidden": f.values(), "Listed": listed, "Sent": res.Sent,
		"Skipped": skipped, "DryRun": !send, "Limit": len(listed), "Back": "/deadletters?" + f.values().Encode()})
}

// allowedList is the session's tenants as a list, nil for the admin.
func allowedList(sess *session) []string {
	if sess.admin() {
		return nil
	}
	out := []string{}
	for t := range sess.tenants {
		out = append(out, t)
	}
	return out
}
