package ingest

import (
	"encoding/binary"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// RawEvent is the one record the edge writes per event, so it is encoded by hand instead of through the
// reflective codec: the same single-object bytes as schemas.RawEvents.Encode (TestAppendRawEventMatchesCodec
// holds them equal, so a schema change fails the build's tests), appended into one buffer per request.

// rawHeader is the single-object header of the current RawEvent schema: C3 01 and the fingerprint.
var rawHeader = func() [10]byte {
	var h [10]byte
	h[0], h[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(h[2:], schemas.RawEvents.Fingerprint())
	return h
}()

// rawEventSize bounds the encoded size of a RawEvent with these field lengths.
func rawEventSize(tenant, keyID, source, requestID string, payload int) int {
	const varint = binary.MaxVarintLen64
	return len(rawHeader) + 6*varint + len(tenant) + len(keyID) + len(source) + len(requestID) + payload
}

// appendRawEvent appends the single-object encoding of a RawEvent with these fields to dst.
func appendRawEvent(dst []byte, tenant, keyID, source string, receivedAt time.Time, requestID string, payload []byte) []byte {
	dst = append(dst, rawHeader[:]...)
	dst = appendAvroString(dst, tenant)
	dst = appendAvroString(dst, keyID)
	dst = appendAvroString(dst, source)
	dst = binary.AppendVarint(dst, receivedAt.UnixMilli()) // timestamp-millis: zig-zag long
	dst = appendAvroString(dst, requestID)
	dst = binary.AppendVarint(dst, int64(len(payload)))
	return append(dst, payload...)
}

func appendAvroString(dst []byte, s string) []byte {
	dst = binary.AppendVarint(dst, int64(len(s)))
	return append(dst, s...)
}
