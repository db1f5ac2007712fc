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

	secretDigest []byte
}

// keyFile is the registry file's shape.
type keyFile struct {
	Keys map[string]*Key `json:"keys"`
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

// checkSignature reports whether sig is the hex HMAC-SHA1 of body under the key's signing secret. A key
// without a signing secret accepts any.
func (k *Key) checkSignature(body []byte, sig string) bool {
	if k.SigningSecret == "" {
		return true
	}
	want, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return false
	}
	mac := hmac.New(sha1.New, []byte(k.SigningSecret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), want)
}

// registry holds the current key set; lookups are lock free and a reload swaps the whole set at once.
type registry struct {
	path string
	keys atomic.Pointer[map[string]*Key]
	// raw is the file content of the current set, to skip reloads that change nothing.
	raw atomic.Pointer[[]byte]
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
		case strings.Contains(k.Tenant, "|"):
			return nil, fmt.Errorf("key %q: tenant must not contain '|'", k.ID)
		case k.EndpointType == "":
			return nil, fmt.Errorf("key %q: no endpoint_type", k.ID)
		case k.MonthlyLimit < 0:
			return nil, fmt.Errorf("key %q: negative monthly_limit", k.ID)
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
