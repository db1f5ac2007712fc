package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// The Schema Registry wire format (Confluent's, which every registry client reads): magic byte 0, the schema id
// as 4 bytes big-endian, then the Avro binary body. Records in it name their writer schema by the registry's id
// instead of the single-object fingerprint, so reading one takes a registry lookup (cached per id).
const (
	registryMagic     = 0x00
	registryHeaderLen = 5
)

// Errors of the registry wire format; every decoder returns them wrapped (callers dead-letter such a record, as
// they do an unknown fingerprint).
var (
	// ErrNoRegistry means the record is in the registry wire format but this reader was given no registry.
	ErrNoRegistry = errors.New("record in the schema registry wire format, but no schema registry is configured (-schema-registry)")
	// ErrUnknownSchemaID means the registry answered that it has no schema with the record's id.
	ErrUnknownSchemaID = errors.New("schema id unknown to the schema registry")
	// ErrRegistryUnavailable means the registry did not answer (down, unreachable, or an error of its own).
	ErrRegistryUnavailable = errors.New("schema registry unavailable")
)

// Record is a record type of the contract (one of the package's codecs) as the registry sees it.
type Record interface {
	// Fingerprint is the CRC-64-AVRO fingerprint of the schema the codec writes.
	Fingerprint() uint64
	codecName() string
	writerSource() string
	singleObjectHeader() []byte
}

// registryTimeout bounds one registry request made while decoding (a lookup of an id not cached yet).
const registryTimeout = 5 * time.Second

// unknownIDTTL is how long an id the registry said it does not have is remembered as unknown, so a stream of
// such records costs one lookup per id and interval, not one per record.
const unknownIDTTL = 10 * time.Second

// Registry is a Schema Registry speaking Confluent's API (pkg/sr): the schemas a stage writes are registered in it
// under the TopicNameStrategy subject <topic>-value, and the writer schema of a record in the registry wire format
// is looked up in it by id, once per id. A nil *Registry means "no registry": writers use single-object encoding
// and registry-framed records fail with ErrNoRegistry. Safe for concurrent use.
type Registry struct {
	cl  *sr.Client
	url string

	mu       sync.RWMutex
	byID     map[int]writerSchema       // schemas looked up or registered, by id
	headers  map[uint64][]byte          // fingerprint → its wire format header (Header's result, shared)
	unknown  map[int]time.Time          // ids the registry denied, until when
	resolved map[resolveKey]avro.Schema // (codec, id) → schema to decode into the codec's type
}

type writerSchema struct {
	schema avro.Schema
	fp     uint64
}

type resolveKey struct {
	codec string
	id    int
}

// NewRegistry connects to the registry at url (for Apicurio's compatible API, http://host:port/apis/ccompat/v7)
// and checks that it answers, so a stage started against a registry that is down fails at start, saying so.
func NewRegistry(ctx context.Context, url string) (*Registry, error) {
	cl, err := sr.NewClient(sr.URLs(url), sr.HTTPClient(&http.Client{Timeout: registryTimeout}))
	if err != nil {
		return nil, fmt.Errorf("schema registry %s: %w", url, err)
	}
	r := &Registry{cl: cl, url: url, byID: map[int]writerSchema{}, headers: map[uint64][]byte{},
		unknown: map[int]time.Time{}, resolved: map[resolveKey]avro.Schema{}}
	if _, err := cl.Subjects(ctx); err != nil {
		return nil, fmt.Errorf("schema registry %s: %w: %v", url, ErrRegistryUnavailable, err)
	}
	return r, nil
}

// URL is the address the registry was opened with.
func (r *Registry) URL() string { return r.url }

// Subject is the TopicNameStrategy subject of the values of topic (a full name, prefix included).
func Subject(topic string) string { return topic + "-value" }

// Register registers the writer schema of each record under the subject of topic (Subject) and remembers its id,
// which Header then frames records with. Registering a schema the subject already has returns its existing id.
func (r *Registry) Register(ctx context.Context, topic string, recs ...Record) error {
	for _, rec := range recs {
		ss, err := r.cl.CreateSchema(ctx, Subject(topic), sr.Schema{Schema: rec.writerSource(), Type: sr.TypeAvro})
		if err != nil {
			return fmt.Errorf("registering %s under %s at %s: %w", rec.codecName(), Subject(topic), r.url, registryError(err))
		}
		s, err := avro.ParseWithCache(rec.writerSource(), "", &avro.SchemaCache{})
		if err != nil {
			return fmt.Errorf("registering %s: %w", rec.codecName(), err)
		}
		h := make([]byte, registryHeaderLen)
		h[0] = registryMagic
		binary.BigEndian.PutUint32(h[1:], uint32(ss.ID))
		r.mu.Lock()
		r.headers[rec.Fingerprint()] = h
		r.byID[ss.ID] = writerSchema{schema: s, fp: rec.Fingerprint()}
		r.mu.Unlock()
	}
	return nil
}

// Header returns the bytes a writer puts before each Avro body of rec: the registry wire format's magic byte and
// id (rec must have been registered), or, for a nil registry, the single-object marker and fingerprint. The
// bytes are shared: never modify them.
func (r *Registry) Header(rec Record) ([]byte, error) {
	if r == nil {
		return rec.singleObjectHeader(), nil
	}
	r.mu.RLock()
	h, ok := r.headers[rec.Fingerprint()]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("schema %s (fingerprint %016x) was not registered with %s", rec.codecName(), rec.Fingerprint(), r.url)
	}
	return h, nil
}

// registryFramed reports whether b is in the registry wire format, and its schema id.
func registryFramed(b []byte) (int, bool) {
	if len(b) < registryHeaderLen || b[0] != registryMagic {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(b[1:registryHeaderLen])), true
}

// schemaByID returns the writer schema with that id, from the cache or the registry.
func (r *Registry) schemaByID(id int) (writerSchema, error) {
	r.mu.RLock()
	ws, ok := r.byID[id]
	until, denied := r.unknown[id]
	r.mu.RUnlock()
	if ok {
		return ws, nil
	}
	if denied && time.Now().Before(until) {
		return writerSchema{}, fmt.Errorf("%w: id %d at %s", ErrUnknownSchemaID, id, r.url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	s, err := r.cl.SchemaByID(ctx, id)
	if err != nil {
		err = registryError(err)
		if errors.Is(err, ErrUnknownSchemaID) {
			r.mu.Lock()
			r.unknown[id] = time.Now().Add(unknownIDTTL)
			r.mu.Unlock()
		}
		return writerSchema{}, fmt.Errorf("looking up schema id %d at %s: %w", id, r.url, err)
	}
	if s.Type != sr.TypeAvro {
		return writerSchema{}, fmt.Errorf("schema id %d at %s is %s, not Avro", id, r.url, s.Type)
	}
	parsed, err := avro.ParseWithCache(s.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return writerSchema{}, fmt.Errorf("schema id %d at %s does not parse: %w", id, r.url, err)
	}
	fp, err := fingerprint(parsed)
	if err != nil {
		return writerSchema{}, err
	}
	ws = writerSchema{schema: parsed, fp: fp}
	r.mu.Lock()
	r.byID[id] = ws
	r.mu.Unlock()
	return ws, nil
}

// registryError classifies an error of pkg/sr: the registry's "not found" answers become ErrUnknownSchemaID,
// every other failure (no answer, a 5xx) ErrRegistryUnavailable.
func registryError(err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		if re.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w (%s)", ErrUnknownSchemaID, re.Error())
		}
		if re.StatusCode < 500 {
			return fmt.Errorf("schema registry refused: HTTP %d: %s", re.StatusCode, re.Error())
		}
	}
	return fmt.Errorf("%w: %v", ErrRegistryUnavailable, err)
}

// readerFor returns the schema to decode a record written with schema id into the codec's type: a version the
// codec knows by fingerprint, or, for a writer schema this binary has never seen, that schema resolved against
// the codec's (Avro schema resolution), which is what a registry makes possible.
func readerFor[T any](r *Registry, c *Codec[T], id int) (avro.Schema, uint64, error) {
	ws, err := r.schemaByID(id)
	if err != nil {
		return nil, 0, err
	}
	if s, ok := c.resolved[ws.fp]; ok {
		return s, ws.fp, nil
	}
	key := resolveKey{c.name, id}
	r.mu.RLock()
	s, ok := r.resolved[key]
	r.mu.RUnlock()
	if ok {
		return s, ws.fp, nil
	}
	s, err = avro.NewSchemaCompatibility().Resolve(c.reader, ws.schema)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: schema id %d at %s: %v", ErrIncompatible, id, r.url, err)
	}
	r.mu.Lock()
	r.resolved[key] = s
	r.mu.Unlock()
	return s, ws.fp, nil
}
