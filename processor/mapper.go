package processor

// Mapper is the seam for mapping rules (issue 7, built in processor/rules): the core calls Map once per new or
// re-emitted event, before identity resolution. A nil Mapper means no rules.
//
// Map returns the id of the rule that matched ("" when none), the signal name the rule gives, and the fields it
// extracted (name, company, title, email, ...). A non-empty fields["email"] is used as the lead's email for this
// event, ahead of the email the event itself carries, so a rule can identify leads from any payload field.
// Map is called from one goroutine per processor but must not block: it runs on the hot path.
type Mapper interface {
	Map(tenant string, ev *Event) (ruleID, mappedName string, fields map[string]string)
}
