package schemas

import (
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// Sentinel errors returned by Codec.Decode; callers branch on them with errors.Is (for example to dead-letter).
var (
	// ErrNotSingleObject means the bytes start neither with the Avro single-object marker C3 01 nor with the
	// schema registry wire format's magic byte 0, or are too short.
	ErrNotSingleObject = errors.New("not an avro single-object encoded record (nor in the schema registry wire format)")
	// ErrUnknownFingerprint means no schema version known to this binary has the writer's fingerprint.
	ErrUnknownFingerprint = errors.New("unknown writer schema fingerprint")
	// ErrCorrupt means the header was valid but the body does not decode with the writer's schema.
	ErrCorrupt = errors.New("corrupt avro record")
	// ErrIncompatible means the writer's schema is known but cannot be read as the current one.
	ErrIncompatible = errors.New("writer schema incompatible with reader schema")
)

// headerLen is the single-object header: 2 marker bytes and the 8-byte little-endian CRC-64-AVRO fingerprint.
const headerLen = 10

//go:embed avsc/*.avsc
var avscFS embed.FS

// api is frozen once; hamba caches codecs per schema and type inside it.
var api = avro.Config{}.Freeze()

// Codec encodes T as Avro single-object encoding with the newest schema version of its record, and decodes
// records written with any version kept in schemas/avsc (resolved to the newest). It is safe for concurrent use.
type Codec[T any] struct {
	name   string
	reader avro.Schema
	source string // the text of the newest version, what a registry is given
	header [headerLen]byte

	// Both maps are filled by NewCodec and only read afterwards, so they need no lock.
	resolved map[uint64]avro.Schema // writer fingerprint → schema to decode it into T
	writers  map[uint64]avro.Schema
}

// Codecs for each record of the contract.
var (
	RawEvents     = mustCodec[RawEvent]("raw_event")
	Signals       = mustCodec[Signal]("signal")
	IdentityLinks = mustCodec[IdentityLink]("identity_link")
	DeadLetters   = mustCodec[DeadLetter]("dead_letter")
)

func mustCodec[T any](name string) *Codec[T] {
	versions, err := loadVersions(avscFS, "avsc", name)
	if err != nil {
		panic(err)
	}
	c, err := NewCodec[T](name, versions...)
	if err != nil {
		panic(err)
	}
	return c
}

// loadVersions reads dir/name.vN.avsc from fsys, oldest first.
func loadVersions(fsys embed.FS, dir, name string) ([]string, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading schemas: %w", err)
	}
	type ver struct {
		n   int
		src string
	}
	var vs []ver
	for _, e := range entries {
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(e.Name(), name+".v"), "%d.avsc", &n); err != nil || !strings.HasPrefix(e.Name(), name+".v") {
			continue
		}
		b, err := fsys.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		vs = append(vs, ver{n, string(b)})
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("no schema versions for %s", name)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].n < vs[j].n })
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.src
	}
	return out, nil
}

// NewCodec builds a codec from schema versions, oldest first; the last one is the writer and reader schema.
// Every older version must be readable as the newest (Avro schema resolution rules).
func NewCodec[T any](name string, versions ...string) (*Codec[T], error) {
	if len(versions) == 0 {
		return nil, fmt.Errorf("codec %s: no schema versions", name)
	}
	c := &Codec[T]{name: name, resolved: map[uint64]avro.Schema{}, writers: map[uint64]avro.Schema{}}
	compat := avro.NewSchemaCompatibility()
	for i, src := range versions {
		s, err := avro.ParseWithCache(src, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("codec %s: parsing version %d: %w", name, i+1, err)
		}
		fp, err := fingerprint(s)
		if err != nil {
			return nil, fmt.Errorf("codec %s: %w", name, err)
		}
		c.writers[fp] = s
		if i == len(versions)-1 {
			c.reader = s
			c.source = src
			c.header[0], c.header[1] = 0xC3, 0x01
			binary.LittleEndian.PutUint64(c.header[2:], fp)
		}
	}
	for fp, w := range c.writers {
		if w == c.reader {
			c.resolved[fp] = c.reader
			continue
		}
		r, err := compat.Resolve(c.reader, w)
		if err != nil {
			return nil, fmt.Errorf("codec %s: %w: %v", name, ErrIncompatible, err)
		}
		c.resolved[fp] = r
	}
	return c, nil
}

func fingerprint(s avro.Schema) (uint64, error) {
	b, err := s.FingerprintUsing(avro.CRC64AvroLE)
	if err != nil {
		return 0, fmt.Errorf("fingerprinting schema: %w", err)
	}
	return binary.LittleEndian.Uint64(b), nil
}

// Schema returns the newest schema version, the one Encode writes.
func (c *Codec[T]) Schema() avro.Schema { return c.reader }

// Fingerprint returns the CRC-64-AVRO fingerprint of the schema Encode writes.
func (c *Codec[T]) Fingerprint() uint64 { return binary.LittleEndian.Uint64(c.header[2:]) }

func (c *Codec[T]) codecName() string          { return c.name }
func (c *Codec[T]) writerSource() string       { return c.source }
func (c *Codec[T]) singleObjectHeader() []byte { return append([]byte(nil), c.header[:]...) }

// Encode returns v as a single-object encoded record written with the newest schema.
func (c *Codec[T]) Encode(v *T) ([]byte, error) { return c.EncodeWith(nil, v) }

// EncodeWith returns v written with the newest schema, framed for reg: in the registry wire format with the id
// reg registered the schema under, or single-object encoded when reg is nil.
func (c *Codec[T]) EncodeWith(reg *Registry, v *T) ([]byte, error) {
	hdr := c.header[:]
	if reg != nil {
		var err error
		if hdr, err = reg.Header(c); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", c.name, err)
		}
	}
	body, err := api.Marshal(c.reader, v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", c.name, err)
	}
	out := make([]byte, len(hdr)+len(body))
	copy(out, hdr)
	copy(out[len(hdr):], body)
	return out, nil
}

// Decode reads a single-object encoded record written with any known version into v. It never panics on bad
// input: it returns ErrNotSingleObject, ErrUnknownFingerprint or ErrCorrupt (and ErrNoRegistry for a record in
// the registry wire format).
func (c *Codec[T]) Decode(b []byte, v *T) error { return c.DecodeWith(nil, b, v) }

// DecodeWith reads a record in either format into v: single-object encoded (any version this binary has), or in
// the schema registry wire format, its writer schema looked up in reg by id (cached). Errors as Decode's, plus
// ErrUnknownSchemaID and ErrRegistryUnavailable.
func (c *Codec[T]) DecodeWith(reg *Registry, b []byte, v *T) error {
	if id, ok := registryFramed(b); ok {
		if reg == nil {
			return fmt.Errorf("decoding %s: %w (schema id %d)", c.name, ErrNoRegistry, id)
		}
		s, _, err := readerFor(reg, c, id)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", c.name, err)
		}
		return c.decodeBody(s, b[registryHeaderLen:], v)
	}
	if len(b) < headerLen || b[0] != 0xC3 || b[1] != 0x01 {
		return fmt.Errorf("decoding %s: %w", c.name, ErrNotSingleObject)
	}
	fp := binary.LittleEndian.Uint64(b[2:headerLen])
	s, ok := c.resolved[fp]
	if !ok {
		return fmt.Errorf("decoding %s: %w %016x", c.name, ErrUnknownFingerprint, fp)
	}
	return c.decodeBody(s, b[headerLen:], v)
}

// decodeBody reads an Avro body written with s (resolved to T) into v.
func (c *Codec[T]) decodeBody(s avro.Schema, body []byte, v *T) (err error) {
	// hamba/avro guards against most malformed input with errors, but a hostile length prefix can still trip
	// a slice bound; a poison record must become an error, never a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoding %s: %w: %v", c.name, ErrCorrupt, r)
		}
	}()
	var zero T
	*v = zero
	// Not api.Unmarshal: it treats reading past the end (io.EOF) as success, so a truncated record would decode
	// into zero values. Here running out of bytes, or bytes left over, is corruption.
	r := readers.Get().(*avro.Reader)
	defer readers.Put(r)
	r.Reset(body)
	r.Error = nil
	r.ReadVal(s, v)
	if r.Error != nil {
		return fmt.Errorf("decoding %s: %w: %v", c.name, ErrCorrupt, r.Error)
	}
	if r.Peek(); r.Error == nil {
		return fmt.Errorf("decoding %s: %w: trailing bytes", c.name, ErrCorrupt)
	}
	return nil
}

var readers = sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(api)) }}
