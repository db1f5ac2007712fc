package processor

import (
	"errors"
	"fmt"
)

// maxRecordBytes is the largest record the processor produces: kgo's ProducerBatchMaxBytes in clientOpts (1 MiB),
// less room for the record batch's own header. kgo fails a larger record, which fails the whole transaction, so
// the same input would abort every batch again (a crash loop): such an input is dead-lettered instead, with the
// reason, before anything of it is produced.
const maxRecordBytes = 1<<20 - 128

// recordBytes bounds what a record with key and value takes in a record batch (lengths, attributes, deltas).
func recordBytes(key, value []byte) int { return len(key) + len(value) + 32 }

// errUnproducible marks an input whose outputs or state records are larger than the producer can produce.
var errUnproducible = errors.New("output too large to produce")

// unproducible checks what the record just processed would produce: its outputs (em's pending records) and its
// state writes (ov's writes since begin, which go to the changelog). It returns an error naming the first too
// large one, else nil.
func unproducible(ov *overlay, em *emitter) error {
	for _, r := range em.pending {
		if n := recordBytes(r.Key, r.Value); n > maxRecordBytes {
			return fmt.Errorf("%w: a %d-byte record to %s exceeds the producer's limit of %d bytes", errUnproducible, n, r.Topic, maxRecordBytes)
		}
	}
	for k := range ov.undo {
		if m := ov.muts[k]; !m.del {
			if n := recordBytes(m.key, m.val); n > maxRecordBytes {
				return fmt.Errorf("%w: a %d-byte state record (changelog) exceeds the producer's limit of %d bytes", errUnproducible, n, maxRecordBytes)
			}
		}
	}
	return nil
}
