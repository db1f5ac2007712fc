package ingest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// EndpointSignalStaging is the endpoint type of keys that may post to the webhook and the /v1 API.
const EndpointSignalStaging = "signal-staging"

// secretHashPrefix marks the hash scheme of Key.SecretHash. API secrets are random tokens with far more entropy
// than a password, so a fast hash is safe and keeps verification per request cheap (as GitHub does for tokens).
const secretHashPrefix = "sha256:"

// Key is one API key of the registry file. The key itself is the map key of the file's "keys" object.
type Key struct {
	// ID names the key in records and logs (never the key itself). Required.
	ID string `json:"id"`
	// Tenant owns the events sent with the key. Required.
	Tenant string `json:"tenant"`
	// EndpointType must be "signal-staging" for the webhook and /v1 routes; other types get 403.
	EndpointType string `json:"endpoint_type"`
	// SecretHash, when set, requires X-Api-Secret whose hash (see HashSecret) equals it.
	SecretHash string `json:"secret_hash,omitempty"`
	// SigningSecret, when set, requires X-Signature: hex HMAC-SHA1 of the body (Segment's scheme). HMAC needs the
	// secret itself, so it is the one secret kept in clear: protect the file accordingly.
	SigningSecret string `json:"signing_secret,omitempty"`
	// MonthlyLimit is the number of raw signals accepted per UTC calendar month; 0 means unlimited.
	MonthlyLimit int64 `json:"monthly_limit,omitempty"`
	// Revoked keys are refused with 401, like unknown ones.
	Revoked bool `json:"revoked,omitempty"`
	// Public marks a browser or mobile write key: it is in every page that loads analytics.js, so it can only
	// send, on the /v1 Tracking API routes (403 on the webhook route), carries no secret (a secret_hash or
	// signing_secret on a public key is a load error), and needs allowed_origins.
	Public bool `json:"public,omitempty"`
	// AllowedOrigins are the browser origins ("https://shop.example", or "*" for any) the key accepts requests
	// from (the request's Origin header). A request with an Origin the key does not allow gets 403; a key without
	// allowed_origins refuses every browser request. Server libraries and the Webhooks destination send no Origin.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// MaxInFlight and MaxRequestMemory replace -max-in-flight-per-key and -max-request-memory-per-key for this
	// key (0: the flags'), e.g. for a Webhooks destination sending many 4000-event batches at once. They are
	// capped by -max-in-flight and -max-request-memory.
	MaxInFlight      int   `json:"max_in_flight,omitempty"`
	MaxRequestMemory int64 `json:"max_request_memory,omitempty"`

	secretDigest []byte
	plan         *Tenant // the tenant's settings (never nil after parseKeys)
	anyOrigin    bool
	quota        *keyQuota // the key id's share of the edge (set by the registry, kept across reloads)
}

// Tenant is one tenant's settings in the registry file's "tenants" object (optional: a tenant that is not
// listed has no plan limit).
type Tenant struct {
	// MonthlyLimit is the tenant's plan: events accepted per UTC calendar month across all its keys and every
	// replica; 0 means unlimited. A request that would cross it is refused whole with 429.
	MonthlyLimit int64 `json:"monthly_limit,omitempty"`
}

// keyFile is the registry file's shape.
type keyFile struct {
	Keys    map[string]*Key    `json:"keys"`
	Tenants map[string]*Tenant `json:"tenants,omitempty"`
}

// allowsOrigin reports whether a request from the browser origin may use the key.
func (k *Key) allowsOrigin(origin string) bool {
	if k.anyOrigin {
		return true
	}
	for _, o := range k.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	return false
}

// validName reports whether s is a sane key id or tenant: 1 to 128 of [A-Za-z0-9._:@-], starting with a letter
// or digit. Both name records, Kafka keys (tenant|id) and the usage topic's keys (tenant|key|month|replica), so
// a '|' or a control character would let one name pass for another.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-' || c == ':' || c == '@'):
		default:
			return false
		}
	}
	return true
}

// validOrigin reports whether o is "*" or a serialized origin: scheme://host[:port], no path.
func validOrigin(o string) bool {
	if o == "*" {
		return true
	}
	rest, ok := strings.CutPrefix(o, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(o, "http://")
	}
	return ok && rest != "" && !strings.ContainsAny(rest, "/?#* ")
}

// HashSecret returns the value to store as secret_hash for secret (`ingest keys hash` prints it).
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return secretHashPrefix + hex.EncodeToString(sum[:])
}

// checkSecret reports in constant time whether secret matches the key's hash. A key without a hash accepts any.
func (k *Key) checkSecret(secret string) bool {
	if k.secretDigest == nil {
		return true
	}
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], k.secretDigest) == 1
}

// signs reports whether sig is the HMAC-SHA1 of data under the key's signing secret (constant time).
func (k *Key) signs(data, sig []byte) bool {
	mac := hmac.New(sha1.New, []byte(k.SigningSecret))
	mac.Write(data)
	return hmac.Equal(mac.Sum(nil), sig)
}

// registry holds the current key set; lookups are lock free and a reload swaps the whole set at once.
type registry struct {
	path   string
	quotas *quotas // gives each loaded key its id's quota
	keys   atomic.Pointer[map[string]*Key]
	// raw is the file content of the current set, to skip reloads that change nothing.
	raw atomic.Pointer[[]byte]
	// origins is every origin some key allows (a CORS preflight carries no key, so it is answered for these).
	origins atomic.Pointer[originSet]
}

// originSet is the union of the keys' allowed_origins.
type originSet struct {
	any bool
	set map[string]bool
}

func newOriginSet(keys map[string]*Key) *originSet {
	u := &originSet{set: map[string]bool{}}
	for _, k := range keys {
		if k.Revoked {
			continue
		}
		u.any = u.any || k.anyOrigin
		for _, o := range k.AllowedOrigins {
			u.set[o] = true
		}
	}
	return u
}

// allowsOrigin reports whether some key accepts requests from origin.
func (r *registry) allowsOrigin(origin string) bool {
	u := r.origins.Load()
	return u != nil && (u.any || u.set[origin])
}

// errKeys wraps every registry load error.
var errKeys = errors.New("loading key registry")

func loadKeys(path string) (map[string]*Key, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errKeys, err)
	}
	keys, err := parseKeys(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w %s: %w", errKeys, path, err)
	}
	return keys, raw, nil
}

func parseKeys(raw []byte) (map[string]*Key, error) {
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if f.Keys == nil {
		return nil, errors.New(`missing "keys" object`)
	}
	ids := make(map[string]string, len(f.Keys))
	for apiKey, k := range f.Keys {
		// Errors name the key id, never the key: logs must not leak keys.
		switch {
		case k == nil:
			return nil, errors.New("a key has no settings")
		case apiKey == "":
			return nil, fmt.Errorf("key %q: empty api key", k.ID)
		case k.ID == "":
			return nil, errors.New("a key has no id")
		case k.Tenant == "":
			return nil, fmt.Errorf("key %q: no tenant", k.ID)
		case !validName(k.ID):
			return nil, fmt.Errorf("key id %q: must be 1-128 of A-Z a-z 0-9 . _ - : @, starting with a letter or digit (no '|')", k.ID)
		case strings.Contains(k.Tenant, "|"):
			return nil, fmt.Errorf("key %q: tenant must not contain '|'", k.ID)
		case !validName(k.Tenant):
			return nil, fmt.Errorf("key %q: tenant %q must be 1-128 of A-Z a-z 0-9 . _ - : @, starting with a letter or digit", k.ID, k.Tenant)
		case k.EndpointType == "":
			return nil, fmt.Errorf("key %q: no endpoint_type", k.ID)
		case k.MonthlyLimit < 0:
			return nil, fmt.Errorf("key %q: negative monthly_limit", k.ID)
		case k.MaxInFlight < 0 || k.MaxRequestMemory < 0:
			return nil, fmt.Errorf("key %q: negative max_in_flight or max_request_memory", k.ID)
		case k.Public && (k.SecretHash != "" || k.SigningSecret != ""):
			return nil, fmt.Errorf("key %q: a public (browser) key cannot have a secret_hash or signing_secret: the page would publish it", k.ID)
		case k.Public && len(k.AllowedOrigins) == 0:
			return nil, fmt.Errorf("key %q: a public (browser) key needs allowed_origins (origins such as \"https://shop.example\", or \"*\")", k.ID)
		}
		for _, o := range k.AllowedOrigins {
			if !validOrigin(o) {
				return nil, fmt.Errorf("key %q: allowed_origins: %q is not an origin (scheme://host[:port]) or \"*\"", k.ID, o)
			}
			k.anyOrigin = k.anyOrigin || o == "*"
		}
		if k.plan = f.Tenants[k.Tenant]; k.plan == nil {
			k.plan = &Tenant{}
		}
		if other, dup := ids[k.ID]; dup && other != apiKey {
			return nil, fmt.Errorf("key id %q used twice", k.ID)
		}
		ids[k.ID] = apiKey
		if k.SecretHash != "" {
			h, ok := strings.CutPrefix(k.SecretHash, secretHashPrefix)
			d, err := hex.DecodeString(h)
			if !ok || err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("key %q: secret_hash must be %s<64 hex digits> (see `ingest keys hash`)", k.ID, secretHashPrefix)
			}
			k.secretDigest = d
		}
	}
	for name, t := range f.Tenants {
		switch {
		case !validName(name):
			return nil, fmt.Errorf("tenant %q: must be 1-128 of A-Z a-z 0-9 . _ - : @, starting with a letter or digit", name)
		case t == nil:
			return nil, fmt.Errorf("tenant %q: no settings", name)
		case t.MonthlyLimit < 0:
			return nil, fmt.Errorf("tenant %q: negative monthly_limit", name)
		}
	}
	return f.Keys, nil
}

// reload reads the file again. changed is false when its content is the same; on error the old set stays.
func (r *registry) reload() (changed bool, err error) {
	keys, raw, err := loadKeys(r.path)
	if err != nil {
		return false, err
	}
	if old := r.raw.Load(); old != nil && bytes.Equal(*old, raw) {
		return false, nil
	}
	for _, k := range keys {
		k.quota = r.quotas.of(k.ID)
	}
	r.origins.Store(newOriginSet(keys))
	r.keys.Store(&keys)
	r.raw.Store(&raw)
	return true, nil
}

// lookup returns the key's settings, or nil when it is unknown.
func (r *registry) lookup(apiKey string) *Key {
	m := r.keys.Load()
	if m == nil {
		return nil
	}
	return (*m)[apiKey]
}

// loaded reports whether a key set is in place.
func (r *registry) loaded() bool { return r.keys.Load() != nil }
