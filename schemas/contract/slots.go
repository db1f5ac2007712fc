package contract

// The canonicalizer records where the members the contract reads are, by node: the root, and the few objects
// under it whose members become fields. Everything else is canonicalized without a look.

type node uint8

const (
	nodeNone node = iota
	nodeRoot
	nodeContext   // context
	nodePage      // context.page
	nodeCampaign  // context.campaign
	nodeLibrary   // context.library
	nodeCtxTraits // context.traits
	nodeTraits    // traits
	nodeProps     // properties
)

// Slots: the values whose input spans are recorded.
const (
	sType = iota
	sEvent
	sName
	sAnonymousID
	sUserID
	sMessageID
	sGroupID
	sPreviousID
	sProperties
	sTraits
	sContext
	sTimestamp
	sOriginalTimestamp
	sSentAt
	sReceivedAt
	sEmail
	sCtxPage
	sCtxCampaign
	sCtxLibrary
	sCtxTraits
	sCtxUserAgent
	sCtxIP
	sCtxLocale
	sCtxTimezone
	sCtxGroupID
	sPageURL
	sPagePath
	sPageTitle
	sPageSearch
	sPageReferrer
	sUTMSource
	sUTMMedium
	sUTMCampaign
	sUTMTerm
	sUTMContent
	sLibName
	sLibVersion
	sCtxTraitsEmail
	sTraitsEmail
	sPropName
	sPropURL
	sPropPath
	sPropTitle
	sPropSearch
	sPropReferrer
	sPropEmail
	numSlots
)

// slotOf returns the slot of member name of node n (-1: not recorded) and the node of its value.
func slotOf(n node, name []byte) (int, node) {
	switch n {
	case nodeNone:
		return -1, nodeNone
	case nodeRoot:
		switch string(name) {
		case "type":
			return sType, nodeNone
		case "event":
			return sEvent, nodeNone
		case "name":
			return sName, nodeNone
		case "anonymousId":
			return sAnonymousID, nodeNone
		case "userId":
			return sUserID, nodeNone
		case "messageId":
			return sMessageID, nodeNone
		case "groupId":
			return sGroupID, nodeNone
		case "previousId":
			return sPreviousID, nodeNone
		case "properties":
			return sProperties, nodeProps
		case "traits":
			return sTraits, nodeTraits
		case "context":
			return sContext, nodeContext
		case "timestamp":
			return sTimestamp, nodeNone
		case "originalTimestamp":
			return sOriginalTimestamp, nodeNone
		case "sentAt":
			return sSentAt, nodeNone
		case "receivedAt":
			return sReceivedAt, nodeNone
		case "email":
			return sEmail, nodeNone
		}
	case nodeContext:
		switch string(name) {
		case "page":
			return sCtxPage, nodePage
		case "campaign":
			return sCtxCampaign, nodeCampaign
		case "library":
			return sCtxLibrary, nodeLibrary
		case "traits":
			return sCtxTraits, nodeCtxTraits
		case "userAgent":
			return sCtxUserAgent, nodeNone
		case "ip":
			return sCtxIP, nodeNone
		case "locale":
			return sCtxLocale, nodeNone
		case "timezone":
			return sCtxTimezone, nodeNone
		case "groupId":
			return sCtxGroupID, nodeNone
		}
	case nodePage:
		switch string(name) {
		case "url":
			return sPageURL, nodeNone
		case "path":
			return sPagePath, nodeNone
		case "title":
			return sPageTitle, nodeNone
		case "search":
			return sPageSearch, nodeNone
		case "referrer":
			return sPageReferrer, nodeNone
		}
	case nodeCampaign:
		// Segment's context.campaign holds the utm_ parameters without the prefix, and utm_campaign as "name"
		// (analytics.js: utm_campaign -> campaign.name).
		switch string(name) {
		case "source":
			return sUTMSource, nodeNone
		case "medium":
			return sUTMMedium, nodeNone
		case "name":
			return sUTMCampaign, nodeNone
		case "term":
			return sUTMTerm, nodeNone
		case "content":
			return sUTMContent, nodeNone
		}
	case nodeLibrary:
		switch string(name) {
		case "name":
			return sLibName, nodeNone
		case "version":
			return sLibVersion, nodeNone
		}
	case nodeCtxTraits:
		if string(name) == "email" {
			return sCtxTraitsEmail, nodeNone
		}
	case nodeTraits:
		if string(name) == "email" {
			return sTraitsEmail, nodeNone
		}
	case nodeProps:
		switch string(name) {
		case "name":
			return sPropName, nodeNone
		case "url":
			return sPropURL, nodeNone
		case "path":
			return sPropPath, nodeNone
		case "title":
			return sPropTitle, nodeNone
		case "search":
			return sPropSearch, nodeNone
		case "referrer":
			return sPropReferrer, nodeNone
		case "email":
			return sPropEmail, nodeNone
		}
	}
	return -1, nodeNone
}
