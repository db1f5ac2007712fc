package rules

// Mapper adapts the rules in effect to the processor's mapping seam without this package importing the
// processor: instantiated as Mapper[*processor.Event], its Map method has exactly the shape of
// processor.Mapper. Rules is usually Watcher.Set; Event turns the processor's event into the matcher's input
// (see Event: pass the processor's event as Fields, which reads only the dot paths asked for).
type Mapper[E any] struct {
	Rules func() *Set
	Event func(E) Event
}

// Map returns the winning rule's id and signal name and the fields it mapped, with the lead's email (already
// lower-cased) under "email". ruleID is "" when no rule matches.
func (m Mapper[E]) Map(tenant string, ev E) (ruleID, mappedName string, fields map[string]string) {
	in := m.Event(ev)
	r, ok := m.Rules().Match(tenant, &in)
	if !ok {
		return "", "", nil
	}
	fields = r.Fields
	if r.Email != "" {
		if fields == nil {
			fields = make(map[string]string, 1)
		}
		fields[TargetEmail] = r.Email
	}
	return r.RuleID, r.Signal, fields
}
