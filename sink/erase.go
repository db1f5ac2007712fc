package sink

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Identifier kinds of erased_ids.
const (
	erasedEmail     = "email"
	erasedAnonymous = schemas.IDKindAnonymous
	erasedUser      = schemas.IDKindUser
)

type erasedKey struct{ tenant, kind, id string }

// erased is the suppression list: the identifiers of erased people (erased_ids), loaded at start and grown by
// every erasure the sink applies. Rows that carry one of them are dropped on load. Owned by the loop goroutine.
type erased map[erasedKey]struct{}

func (e erased) has(tenant, kind, id string) bool {
	if id == "" {
		return false
	}
	_, ok := e[erasedKey{tenant, kind, id}]
	return ok
}

func (e erased) signal(r *signalRow) bool {
	return len(e) > 0 && (e.has(r.Tenant, erasedEmail, r.Email) || e.has(r.Tenant, erasedAnonymous, r.AnonymousID) ||
		e.has(r.Tenant, erasedUser, r.UserID))
}

func (e erased) identity(r *identityRow) bool {
	return len(e) > 0 && (e.has(r.Tenant, erasedEmail, r.Email) || e.has(r.Tenant, erasedAnonymous, r.AnonymousID) ||
		e.has(r.Tenant, erasedUser, r.UserID) || e.has(r.Tenant, r.IDKind, r.ID))
}

// eraseMetrics are the erasure's own metrics (registered next to metrics.go's).
type eraseMetrics struct {
	erasures   prometheus.Counter
	erasedRows *prometheus.CounterVec // by table: rows an erasure removed
	suppressed *prometheus.CounterVec // by table: rows of erased people dropped on load
}

func newEraseMetrics(reg prometheus.Registerer) (*eraseMetrics, error) {
	const ns, sub = "signalstage", "sink"
	m := &eraseMetrics{
		erasures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "erasures_total",
			Help: "Erasure requests applied (signals.erasures)."}),
		erasedRows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "erased_rows_total",
			Help: "Rows erasures removed, by table."}, []string{"table"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "suppressed_rows_total",
			Help: "Rows of erased people dropped on load, by table."}, []string{"table"}),
	}
	for _, c := range []prometheus.Collector{m.erasures, m.erasedRows, m.suppressed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// loadErased reads erased_ids into memory.
func loadErased(ctx context.Context, conn driver.Conn, database string) (erased, error) {
	rows, err := conn.Query(ctx, "SELECT tenant, id_kind, id FROM "+database+".erased_ids")
	if err != nil {
		return nil, fmt.Errorf("reading erased_ids: %w", err)
	}
	defer rows.Close()
	e := erased{}
	for rows.Next() {
		var k erasedKey
		if err := rows.Scan(&k.tenant, &k.kind, &k.id); err != nil {
			return nil, fmt.Errorf("reading erased_ids: %w", err)
		}
		e[k] = struct{}{}
	}
	return e, rows.Err()
}

// person is everything one erasure removes: the emails and visitor ids of one tenant.
type person struct {
	tenant                 string
	emails, anon, users    []string
	requestID              string
	requestedAt, erasedAt  time.Time
	tables                 []string
	removed                []uint64
	linkedEmails, linkedID int
}

// ErasureReport is what an erasure removed, from erasure_log.
type ErasureReport struct {
	Tenant, RequestID string
	ErasedAt          time.Time
	Emails, Visitors  uint32
	Rows              map[string]uint64 // by table
}

// erase applies the erasure record r: it first gets every row consumed so far into ClickHouse (so none of the
// person's rows arrives after the delete), resolves the person (the ids linked to the email, the emails linked to
// the ids, the visitor ids their linked signals carried), counts and deletes their rows in every table (ALTER
// TABLE ... DELETE mutations on 18.16, lightweight DELETE on current releases), records the identifiers in
// erased_ids and the counts in erasure_log, and adds them to the suppression list. ClickHouse failing is retried
// until ctx ends; then the record's offset is not committed and the erasure runs again at the next start.
func (s *Sink) erase(ctx context.Context, r *kgo.Record) error {
	var e schemas.Erasure
	if err := schemas.Erasures.DecodeWith(s.reg, r.Value, &e); err != nil {
		return err
	}
	if e.Tenant == "" || (e.Email == "" && e.AnonymousID == "" && e.UserID == "") {
		return fmt.Errorf("%w: erasure without a tenant or without any identifier", ErrUnconvertible)
	}
	if err := s.drainAll(ctx); err != nil {
		return err
	}
	p := &person{tenant: e.Tenant, requestID: e.RequestID, requestedAt: e.RequestedAt}
	add := func(list *[]string, v string) {
		if v != "" && !contains(*list, v) {
			*list = append(*list, v)
		}
	}
	add(&p.emails, strings.ToLower(e.Email))
	add(&p.anon, e.AnonymousID)
	add(&p.users, e.UserID)
	wait := s.cfg.RetryMin
	for {
		err := s.applyErasure(ctx, p, add)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("erasure failed, retrying", "request", e.RequestID, "backoff", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
	for _, v := range p.emails {
		s.erased[erasedKey{p.tenant, erasedEmail, v}] = struct{}{}
	}
	for _, v := range p.anon {
		s.erased[erasedKey{p.tenant, erasedAnonymous, v}] = struct{}{}
	}
	for _, v := range p.users {
		s.erased[erasedKey{p.tenant, erasedUser, v}] = struct{}{}
	}
	s.em.erasures.Inc()
	attrs := []any{"tenant", p.tenant, "request", p.requestID, "emails", len(p.emails),
		"visitor_ids", len(p.anon) + len(p.users)}
	for i, t := range p.tables {
		s.em.erasedRows.WithLabelValues(t).Add(float64(p.removed[i]))
		attrs = append(attrs, t, p.removed[i])
	}
	s.log.Info("erased a person", attrs...)
	return nil
}

// drainAll hands every batch to the flushers and waits until ClickHouse acknowledged all of them.
func (s *Sink) drainAll(ctx context.Context) error {
	for _, b := range s.tables {
		if b.len() > 0 {
			if err := s.handOver(ctx, &job{b: b.take(), reason: "erasure"}); err != nil {
				return err
			}
		}
	}
	for len(s.inflight) > 0 {
		select {
		case r := <-s.results:
			s.complete(r)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// applyErasure resolves p, then counts and deletes its rows table by table and records the erasure.
func (s *Sink) applyErasure(ctx context.Context, p *person, add func(*[]string, string)) error {
	db, t := s.cfg.Database, QuoteString(p.tenant)
	// The ids linked to the emails and the emails linked to the ids, in every version of identities (erasing a
	// link that was replaced since is still erasing the person), and the visitor ids of their linked signals.
	if len(p.emails) > 0 || len(p.anon)+len(p.users) > 0 {
		rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT email, id_kind, id, anonymous_id, user_id FROM %s.identities "+
			"WHERE tenant = %s AND deleted = 0 AND (%s)", db, t, orAll(inList("email", p.emails),
			inList("id", append(append([]string{}, p.anon...), p.users...)))))
		if err != nil {
			return fmt.Errorf("resolving the person: %w", err)
		}
		for rows.Next() {
			var email, kind, id, anon, user string
			if err := rows.Scan(&email, &kind, &id, &anon, &user); err != nil {
				rows.Close()
				return fmt.Errorf("resolving the person: %w", err)
			}
			add(&p.emails, email)
			add(&p.anon, anon)
			add(&p.users, user)
			if kind == schemas.IDKindUser {
				add(&p.users, id)
			} else {
				add(&p.anon, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("resolving the person: %w", err)
		}
	}
	if len(p.emails) > 0 {
		rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT anonymous_id, user_id FROM %s.lead_signals "+
			"WHERE tenant = %s AND %s", db, t, inList("email", p.emails)))
		if err != nil {
			return fmt.Errorf("resolving the person's visitor ids: %w", err)
		}
		for rows.Next() {
			var anon, user string
			if err := rows.Scan(&anon, &user); err != nil {
				rows.Close()
				return fmt.Errorf("resolving the person's visitor ids: %w", err)
			}
			add(&p.anon, anon)
			add(&p.users, user)
		}
		rows.Close()
	}
	visitors := orAll(inList("anonymous_id", p.anon), inList("user_id", p.users))
	ids := append(append([]string{}, p.anon...), p.users...)
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = p.tenant + schemas.KeySep + id
	}
	// The email anywhere in a dead letter's bytes (18.16 has no multiSearchAny).
	var inPayload []string
	for _, e := range p.emails {
		inPayload = append(inPayload, "positionCaseInsensitive(payload, "+QuoteString(e)+") > 0")
	}
	emailInPayload := strings.Join(inPayload, " OR ")
	targets := []struct{ table, where string }{
		{"signals", orAll(inList("email", p.emails), visitors)},
		{"lead_signals", orAll(inList("email", p.emails), visitors)},
		{"identities", orAll(inList("email", p.emails), visitors, inList("id", ids))},
		{"lead_fields", inList("email", p.emails)},
		// A dead letter is the person's when its key is one of their visitor ids or its bytes carry their email.
		{"dead_letters_v2", orAll(inList("key", keys), emailInPayload)},
	}
	lightweight, err := s.lightweightDelete()
	if err != nil {
		return err
	}
	p.tables, p.removed = p.tables[:0], p.removed[:0]
	for _, tg := range targets {
		if tg.where == "" {
			continue
		}
		cond := fmt.Sprintf("tenant = %s AND (%s)", t, tg.where)
		if tg.table == "dead_letters_v2" {
			cond = fmt.Sprintf("(tenant = %s OR tenant = '') AND (%s)", t, tg.where)
		}
		var n uint64
		if err := s.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", db, tg.table, cond)).Scan(&n); err != nil {
			return fmt.Errorf("counting the person's rows of %s: %w", tg.table, err)
		}
		p.tables, p.removed = append(p.tables, tg.table), append(p.removed, n)
		if n == 0 {
			continue
		}
		table := tg.table
		if s.cluster != nil { // a Distributed table takes no mutation: each shard's replicated table does
			table += LocalSuffix
		}
		stmt := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s", db, table, cond)
		if lightweight {
			stmt = fmt.Sprintf("DELETE FROM %s.%s WHERE %s", db, table, cond)
		}
		if s.cluster != nil {
			err = s.cluster.onEveryShard(ctx, stmt)
		} else {
			err = s.conn.Exec(ctx, stmt)
		}
		if err != nil {
			return fmt.Errorf("deleting the person's rows of %s: %w", tg.table, err)
		}
	}
	p.erasedAt = time.Now().UTC()
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+db+".erased_ids (tenant, id_kind, id, request_id, erased_at)")
	if err != nil {
		return fmt.Errorf("recording erased ids: %w", err)
	}
	for kind, list := range map[string][]string{erasedEmail: p.emails, erasedAnonymous: p.anon, erasedUser: p.users} {
		for _, id := range list {
			if err := b.Append(p.tenant, kind, id, p.requestID, p.erasedAt); err != nil {
				_ = b.Abort()
				return fmt.Errorf("recording erased ids: %w", err)
			}
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("recording erased ids: %w", err)
	}
	lb, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+db+".erasure_log (tenant, request_id, erased_at, emails, visitor_ids, tables, rows)")
	if err != nil {
		return fmt.Errorf("recording the erasure: %w", err)
	}
	if err := lb.Append(p.tenant, p.requestID, p.erasedAt, uint32(len(p.emails)), uint32(len(p.anon)+len(p.users)),
		p.tables, p.removed); err != nil {
		_ = lb.Abort()
		return fmt.Errorf("recording the erasure: %w", err)
	}
	if err := lb.Send(); err != nil {
		return fmt.Errorf("recording the erasure: %w", err)
	}
	return nil
}

// lightweightDelete reports whether the server has DELETE FROM (lightweight deletes, ClickHouse 23.3 and later);
// older servers get ALTER TABLE ... DELETE mutations.
func (s *Sink) lightweightDelete() (bool, error) {
	v, err := s.conn.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("reading the server version: %w", err)
	}
	return v.Version.Major > 23 || (v.Version.Major == 23 && v.Version.Minor >= 3), nil
}

// inList is "column IN ('a', 'b')", or "" for no values.
func inList(column string, values []string) string {
	if len(values) == 0 {
		return ""
	}
	sorted := append([]string(nil), values...)
	sort.Strings(sorted)
	quoted := make([]string, len(sorted))
	for i, v := range sorted {
		quoted[i] = QuoteString(v)
	}
	return column + " IN (" + strings.Join(quoted, ", ") + ")"
}

// orAll joins the non-empty conditions with OR ("" when all are empty).
func orAll(conds ...string) string {
	var out []string
	for _, c := range conds {
		if c != "" {
			out = append(out, "("+c+")")
		}
	}
	return strings.Join(out, " OR ")
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// ErasureReports reads what the erasures of requestID removed (erasure_log), oldest first: one report per time it
// was applied (a replay of signals.erasures applies a request again and finds nothing more).
func ErasureReports(ctx context.Context, conn driver.Conn, database, requestID string) ([]ErasureReport, error) {
	rows, err := conn.Query(ctx, "SELECT tenant, request_id, erased_at, emails, visitor_ids, tables, rows FROM "+
		database+".erasure_log WHERE request_id = "+QuoteString(requestID)+" ORDER BY erased_at")
	if err != nil {
		return nil, fmt.Errorf("reading erasure_log: %w", err)
	}
	defer rows.Close()
	var out []ErasureReport
	for rows.Next() {
		var r ErasureReport
		var tables []string
		var counts []uint64
		if err := rows.Scan(&r.Tenant, &r.RequestID, &r.ErasedAt, &r.Emails, &r.Visitors, &tables, &counts); err != nil {
			return nil, fmt.Errorf("reading erasure_log: %w", err)
		}
		r.Rows = make(map[string]uint64, len(tables))
		for i, t := range tables {
			r.Rows[t] = counts[i]
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
