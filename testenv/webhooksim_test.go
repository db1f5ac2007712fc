package testenv

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// jsCheck runs the destination's own rules in node on a captured body: it re-serialises the body with
// JSON.stringify (which must give back the same bytes, or the simulator does not send what the destination
// would), and computes the X-Signature as extendRequest does, over JSON.stringify of the (first) event's data.
const jsCheck = `
const { createHmac } = require('crypto')
let raw = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (c) => (raw += c))
process.stdin.on('end', () => {
  const body = JSON.parse(raw)
  const data = Array.isArray(body) ? body[0] : body
  const sig = createHmac('sha1', process.argv[1]).update(JSON.stringify(data), 'utf8').digest('hex')
  process.stdout.write(JSON.stringify({ same: JSON.stringify(body) === raw, sig: sig, n: Array.isArray(body) ? body.length : 1 }))
})`

func nodeCheck(t *testing.T, secret string, body []byte) (same bool, sig string, n int) {
	t.Helper()
	cmd := exec.Command("node", "-e", jsCheck, secret)
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check: %v", err)
	}
	var r struct {
		Same bool   `json:"same"`
		Sig  string `json:"sig"`
		N    int    `json:"n"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node check printed %q: %v", out, err)
	}
	return r.Same, r.Sig, r.N
}

func hmacHex(secret string, b []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// TestWebhookSim checks each request the simulator sends byte for byte against the destination's rules:
// single events and batches of 1000 and 4000, signed and unsigned, POST, PUT and PATCH, a custom header.
func TestWebhookSim(t *testing.T) {
	t.Parallel()
	const secret = "whsec_test_7f3a"
	for _, tc := range []struct {
		name   string
		method string
		secret string
		batch  int
		events int
	}{
		{"single-post-unsigned", "", "", 0, 3},
		{"single-put-signed", "PUT", secret, 0, 3},
		{"single-patch-signed", "PATCH", secret, 0, 2},
		{"batch-1000-post-signed", "POST", secret, 1000, 2500},
		{"batch-4000-put-signed", "PUT", secret, 4000, 4000},
		{"batch-1000-patch-unsigned", "PATCH", "", 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewCaptureServer(t)
			events := WebhookEvents(tc.events, tc.name)
			sim := WebhookSim{URL: s.URL + "/api/signal-staging/webhook/key_sim", Method: tc.method, SharedSecret: tc.secret,
				BatchSize: tc.batch, Headers: map[string]string{"X-Api-Secret": "api-secret-1"}}
			ds, err := sim.Send(context.Background(), events)
			if err != nil {
				t.Fatal(err)
			}
			sends := s.Sends()
			wantReqs := tc.events
			if tc.batch > 0 {
				wantReqs = (tc.events + tc.batch - 1) / tc.batch
			}
			if len(sends) != wantReqs || len(ds) != wantReqs {
				t.Fatalf("%d requests captured, %d deliveries, want %d", len(sends), len(ds), wantReqs)
			}
			wantMethod := tc.method
			if wantMethod == "" {
				wantMethod = http.MethodPost
			}
			next := 0 // index of the next event expected
			for i, r := range sends {
				if r.Method != wantMethod || r.Path != "/api/signal-staging/webhook/key_sim" {
					t.Errorf("request %d: %s %s", i, r.Method, r.Path)
				}
				if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "Segment (Actions)" ||
					r.Header.Get("X-Api-Secret") != "api-secret-1" || r.Gzip {
					t.Errorf("request %d headers: %v", i, r.Header)
				}
				// The body the destination sends: one event's data, or "[" + the events' data joined by "," + "]".
				var want []byte
				n := 1
				if tc.batch > 0 {
					n = min(tc.batch, tc.events-next)
					want = []byte("[" + string(bytes.Join(events[next:next+n], []byte(","))) + "]")
				} else {
					want = events[next]
				}
				if !bytes.Equal(r.Body, want) {
					t.Fatalf("request %d: body differs from the destination's (%d bytes, want %d)", i, len(r.Body), len(want))
				}
				sig := r.Header.Get("X-Signature")
				if tc.secret == "" {
					if sig != "" {
						t.Errorf("request %d: unsigned destination sent X-Signature %q", i, sig)
					}
				} else if sig != hmacHex(tc.secret, events[next]) {
					t.Errorf("request %d: X-Signature %q, want HMAC-SHA1 of the first event's bytes %q", i, sig, hmacHex(tc.secret, events[next]))
				}
				if tc.batch > 0 && tc.secret != "" && sig == hmacHex(tc.secret, r.Body) {
					t.Errorf("request %d: a batch's signature covers the whole body; the destination signs only the first event", i)
				}
				if i == 0 || i == len(sends)-1 {
					same, jsSig, jsN := nodeCheck(t, tc.secret, r.Body)
					if !same || jsN != n {
						t.Errorf("request %d: JSON.stringify(JSON.parse(body)) differs from the body (same=%v) or has %d events, want %d", i, same, jsN, n)
					}
					if tc.secret != "" && jsSig != sig {
						t.Errorf("request %d: node computes X-Signature %s the way extendRequest does; the simulator sent %s", i, jsSig, sig)
					}
				}
				if i == 0 {
					t.Logf("%s: %d events in %d bytes per request (%d bytes per event)", tc.name, n, len(r.Body), len(r.Body)/n)
				}
				next += n
			}
			if next != tc.events {
				t.Errorf("%d events delivered, want %d", next, tc.events)
			}
		})
	}
}

// TestWebhookSimRefusesWhatTheDestinationCannotSend: the destination offers POST, PUT and PATCH only and
// Segment caps the batch size at 4000.
func TestWebhookSimRefusesWhatTheDestinationCannotSend(t *testing.T) {
	s := NewCaptureServer(t)
	for _, sim := range []WebhookSim{{URL: s.URL, Method: "GET"}, {URL: s.URL, Method: "DELETE"}, {URL: s.URL, BatchSize: 4001}} {
		if _, err := sim.Send(context.Background(), WebhookEvents(1, "x")); err == nil || !strings.Contains(err.Error(), "webhook sim") {
			t.Errorf("%+v: err %v, want a refusal", sim, err)
		}
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// The test vector was computed with openssl: printf %s BODY | openssl dgst -sha1 -hmac secret
func ExampleWebhookSignature() {
	fmt.Println(WebhookSignature("secret", []byte(`{"type":"track","event":"Signed Up"}`)))
	// Output: dfedb5207aa01bc19be18c1f07f2f83c09427840
}
