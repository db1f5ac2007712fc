package rules

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	srules "github.com/signalstage/signalstage/schemas/rules"
)

// Set is an immutable, compiled rule set of every tenant. It is safe for concurrent use; a change builds a new
// Set (see Watcher), so a reader never sees half a change.
type Set struct {
	tenants map[string]*tenantRules
	size    int
}

// tenantRules are the rules of one tenant in matching order (priority descending, then id), with an index by
// exact event name so an event only looks at the rules that can name it.
type tenantRules struct {
	all     []Rule      // every rule, disabled ones too, in matching order (for listing)
	rules   []*compiled // enabled rules in matching order
	byEvent map[string][]int32
	other   []int32          // rules whose event is empty or a glob
	paths   []path           // distinct dot paths of the tenant's conditions, indexed by cond.path
	conds   []cond           // distinct conditions of the tenant, indexed by compiled.conds
	names   map[string]int32 // interned sources and types of the rules

	// Interning tables, used while building only.
	pathIdx map[string]int
	condIdx map[condKey]int32
}

type condKey struct {
	path int
	op   opcode
	str  string
}

type compiled struct {
	id, signal string
	// source and typ are interned (tenantRules.names); 0 matches any.
	source, typ int32
	event       glob
	anyEvent    bool
	url         glob
	anyURL      bool
	conds       []int32 // indexes into tenantRules.conds
	targets     []target
}

type cond struct {
	path  int // index into tenantRules.paths
	op    opcode
	str   string
	num   float64
	isNum bool // str parses as a number: eq/ne compare numerically against JSON numbers
	glob  glob
	re    *regexp.Regexp
	// reInsts is the program size of re: the per-byte worst-case cost charged to the Match's regex budget.
	reInsts int
	not     bool // exists false
}

// opcode is an operator resolved at compile time: matching switches on a byte, not on operator names.
type opcode uint8

const (
	opEq opcode = iota + 1
	opNe
	opExists
	opPrefix
	opGlob
	opRegex
	opGt
	opGte
	opLt
	opLte
)

// opCost orders a rule's conditions for evaluation, cheapest first.
var opCost = map[opcode]int{opExists: 0, opEq: 1, opNe: 1, opPrefix: 2, opGt: 3, opGte: 3, opLt: 3, opLte: 3, opGlob: 4, opRegex: 5}

var opcodes = map[string]opcode{OpEq: opEq, OpNe: opNe, OpExists: opExists, OpPrefix: opPrefix, OpGlob: opGlob,
	OpRegex: opRegex, OpGt: opGt, OpGte: opGte, OpLt: opLt, OpLte: opLte}

type target struct {
	field string // email, name, company, title or the enrichment field name
	path  path
}

// NewSet validates and compiles rules into a Set. It fails on the first invalid rule or duplicate tenant/id;
// use Build to skip invalid rules instead.
func NewSet(rs []Rule) (*Set, error) {
	if err := ValidateAll(rs); err != nil {
		return nil, err
	}
	s, _ := Build(rs)
	return s, nil
}

// Build compiles the valid rules into a Set and returns the errors of the rules it left out. A rule read from
// the topic that fails validation (written by an older or foreign writer) must not stop the others.
func Build(rs []Rule) (*Set, []error) {
	rs = append([]Rule(nil), rs...)
	srules.Sort(rs)
	s := &Set{tenants: map[string]*tenantRules{}}
	var errs []error
	seen := map[string]bool{}
	for i := range rs {
		r := &rs[i]
		if err := Validate(r); err != nil {
			errs = append(errs, err)
			continue
		}
		if k := r.Tenant + "|" + r.ID; seen[k] {
			errs = append(errs, &FieldError{Rule: r.Tenant + "/" + r.ID, Field: "id", Err: ErrDuplicateID})
			continue
		} else {
			seen[k] = true
		}
		t := s.tenants[r.Tenant]
		if t == nil {
			t = &tenantRules{byEvent: map[string][]int32{}}
			s.tenants[r.Tenant] = t
		}
		t.all = append(t.all, *r)
		s.size++
		if !r.Enabled {
			continue
		}
		c, err := t.compile(r)
		if err != nil { // unreachable after Validate; kept so a gap in Validate cannot panic here
			errs = append(errs, fmt.Errorf("rule %s/%s: %w", r.Tenant, r.ID, err))
			continue
		}
		n := int32(len(t.rules))
		t.rules = append(t.rules, c)
		if c.anyEvent || !c.event.exact {
			t.other = append(t.other, n)
		} else {
			t.byEvent[c.event.pieces[0]] = append(t.byEvent[c.event.pieces[0]], n)
		}
	}
	for _, t := range s.tenants {
		t.pathIdx, t.condIdx = nil, nil
	}
	return s, errs
}

// update returns a new Set equal to s except for the tenants in changed, whose rules are replaced (an empty
// list removes the tenant). Only those tenants are compiled again, so a change costs what its tenant's rules
// cost, not what the whole set does. Every rule listed under a tenant must belong to it.
func (s *Set) update(changed map[string][]Rule) (*Set, []error) {
	n := &Set{tenants: make(map[string]*tenantRules, len(s.tenants)+len(changed))}
	for name, t := range s.tenants {
		if _, ok := changed[name]; !ok {
			n.tenants[name] = t
			n.size += len(t.all)
		}
	}
	var errs []error
	for name, rs := range changed {
		b, e := Build(rs)
		errs = append(errs, e...)
		if t := b.tenants[name]; t != nil {
			n.tenants[name] = t
			n.size += len(t.all)
		}
	}
	return n, errs
}

func (t *tenantRules) compile(r *Rule) (*compiled, error) {
	c := &compiled{id: r.ID, signal: r.Signal, typ: t.name(r.Match.Type)}
	if r.Match.Source != "any" {
		c.source = t.name(r.Match.Source)
	}
	c.anyEvent = r.Match.Event == "" || r.Match.Event == "*"
	c.event = compileGlob(r.Match.Event)
	c.anyURL = r.Match.URL == "" || r.Match.URL == "*"
	c.url = compileGlob(srules.URLPath(r.Match.URL))
	for _, rc := range r.Match.Conditions {
		p, err := parsePath(rc.Path)
		if err != nil {
			return nil, err
		}
		k := cond{path: t.pathIndex(p), op: opcodes[rc.Op], str: string(rc.Value)}
		if f, err := strconv.ParseFloat(k.str, 64); err == nil {
			k.num, k.isNum = f, true
		}
		switch rc.Op {
		case OpGlob:
			k.glob = compileGlob(k.str)
		case OpRegex:
			if k.re, k.reInsts, err = srules.CompileRegex(k.str); err != nil {
				return nil, err
			}
		case OpExists:
			k.not = k.str == "false"
		}
		c.conds = append(c.conds, t.condIndex(k))
	}
	// Cheap conditions first: a rule fails on its first false condition, so a regex is only run when the
	// rest already hold.
	sort.SliceStable(c.conds, func(i, j int) bool { return opCost[t.conds[c.conds[i]].op] < opCost[t.conds[c.conds[j]].op] })
	for _, name := range sortedKeys(r.Map) {
		p, err := parsePath(r.Map[name])
		if err != nil {
			return nil, err
		}
		c.targets = append(c.targets, target{field: strings.TrimPrefix(name, TargetFieldPrefix), path: p})
	}
	return c, nil
}

// name interns a source or type so matching compares integers; "" is 0, any.
func (t *tenantRules) name(s string) int32 {
	if s == "" {
		return 0
	}
	if id, ok := t.names[s]; ok {
		return id
	}
	if t.names == nil {
		t.names = map[string]int32{}
	}
	t.names[s] = int32(len(t.names) + 1)
	return t.names[s]
}

// condIndex interns a condition: rules sharing one (the same URL prefix, the same form) evaluate it once per
// event.
func (t *tenantRules) condIndex(k cond) int32 {
	key := condKey{k.path, k.op, k.str}
	if i, ok := t.condIdx[key]; ok {
		return i
	}
	if t.condIdx == nil {
		t.condIdx = map[condKey]int32{}
	}
	t.conds = append(t.conds, k)
	t.condIdx[key] = int32(len(t.conds) - 1)
	return int32(len(t.conds) - 1)
}

// pathIndex interns p so that rules sharing a path (context.page.url in every page rule) look it up once per
// event.
func (t *tenantRules) pathIndex(p path) int {
	if i, ok := t.pathIdx[p.String()]; ok {
		return i
	}
	if t.pathIdx == nil {
		t.pathIdx = map[string]int{}
	}
	t.paths = append(t.paths, p)
	t.pathIdx[p.String()] = len(t.paths) - 1
	return len(t.paths) - 1
}

// Len returns the number of rules in the set, disabled ones included.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.size
}

// Tenants returns the tenants that have rules, sorted.
func (s *Set) Tenants() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.tenants))
	for t := range s.tenants {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Rules returns a copy of the tenant's rules, disabled ones included, in matching order.
func (s *Set) Rules(tenant string) []Rule {
	if s == nil || s.tenants[tenant] == nil {
		return nil
	}
	return append([]Rule(nil), s.tenants[tenant].all...)
}

// Rule returns one rule of a tenant.
func (s *Set) Rule(tenant, id string) (Rule, bool) {
	if s == nil || s.tenants[tenant] == nil {
		return Rule{}, false
	}
	for _, r := range s.tenants[tenant].all {
		if r.ID == id {
			return r, true
		}
	}
	return Rule{}, false
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
