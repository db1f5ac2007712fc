package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms the private broker's SASL_SSL listener accepts (KafkaSecurity.Mechanism).
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// KafkaSecurity is what a client needs to reach a private broker's SASL_SSL listener: certificates made for the
// test (a CA of its own, a server certificate for 127.0.0.1 and localhost) and one user whose password works with
// PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512. Every file is PEM, under the broker's directory, removed with it.
type KafkaSecurity struct {
	// Addr is the SASL_SSL listener, host:port.
	Addr string
	// CAFile is the CA certificate that signed the server's (and the client's) certificate; CAPEM its contents.
	CAFile string
	CAPEM  []byte
	// ClientCertFile and ClientKeyFile are a client certificate and its PKCS#8 key signed by the same CA. The
	// listener requires one only with WithClientCertificates; they exist either way.
	ClientCertFile, ClientKeyFile string
	// ClientCertRequired says the listener refuses a TLS client without a certificate (WithClientCertificates).
	ClientCertRequired bool
	// User and Password authenticate with any of the three mechanisms.
	User, Password string

	clientCert tls.Certificate
	pool       *x509.CertPool
}

// TLSConfig returns a client TLS config that trusts only the test CA and presents the client certificate.
func (s *KafkaSecurity) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.pool, Certificates: []tls.Certificate{s.clientCert}, MinVersion: tls.VersionTLS12}
}

// Mechanism returns the SASL mechanism name (MechanismPlain, ...) for user and password; it panics on a name
// the listener does not offer.
func (s *KafkaSecurity) Mechanism(name, user, password string) sasl.Mechanism {
	switch name {
	case MechanismPlain:
		return plain.Auth{User: user, Pass: password}.AsMechanism()
	case MechanismScramSHA256:
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case MechanismScramSHA512:
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	}
	panic("testenv: unknown SASL mechanism " + name)
}

// ClientOpts returns the options of a client of the SASL_SSL listener authenticating as User with mechanism.
func (s *KafkaSecurity) ClientOpts(mechanism string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(s.Addr),
		kgo.DialTLSConfig(s.TLSConfig()),
		kgo.SASL(s.Mechanism(mechanism, s.User, s.Password)),
	}
}

// newKafkaSecurity writes the certificates under dir/tls and returns the broker's extra server properties and
// SCRAM format arguments (see services.sh: <dir>/config/extra.properties and scram-credentials).
func newKafkaSecurity(dir, addr string, clientAuth bool) (sec *KafkaSecurity, props, scramArgs string, err error) {
	tdir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return nil, "", "", err
	}
	ca, caKey, caPEM, err := newCA()
	if err != nil {
		return nil, "", "", err
	}
	server, err := newLeaf(ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, "", "", err
	}
	client, err := newLeaf(ca, caKey, "signalstage-test-client", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, "", "", err
	}
	sec = &KafkaSecurity{
		Addr:               addr,
		CAFile:             filepath.Join(tdir, "ca.pem"),
		CAPEM:              caPEM,
		ClientCertFile:     filepath.Join(tdir, "client.pem"),
		ClientKeyFile:      filepath.Join(tdir, "client.key"),
		ClientCertRequired: clientAuth,
		User:               "signalstage",
		Password:           randomSecret(16),
		pool:               x509.NewCertPool(),
	}
	sec.pool.AppendCertsFromPEM(caPEM)
	if sec.clientCert, err = tls.X509KeyPair(client.certPEM, client.keyPEM); err != nil {
		return nil, "", "", err
	}
	serverPEM := filepath.Join(tdir, "server.pem") // Kafka's PEM keystore: the key, then the chain
	for name, data := range map[string][]byte{
		sec.CAFile: caPEM, serverPEM: append(append([]byte{}, server.keyPEM...), server.certPEM...),
		sec.ClientCertFile: client.certPEM, sec.ClientKeyFile: client.keyPEM,
	} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return nil, "", "", err
		}
	}
	auth := "none"
	if clientAuth {
		auth = "required"
	}
	jaas := "org.apache.kafka.common.security.scram.ScramLoginModule required;"
	props = strings.Join([]string{
		"ssl.keystore.type=PEM",
		"ssl.keystore.location=" + serverPEM,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + sec.CAFile,
		"listener.name.sasl_ssl.ssl.client.auth=" + auth,
		"sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
		fmt.Sprintf(`listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`,
			sec.User, sec.Password),
		"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=" + jaas,
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=" + jaas,
	}, "\n") + "\n"
	scramArgs = fmt.Sprintf("SCRAM-SHA-256=[name=%[1]s,password=%[2]s]\nSCRAM-SHA-512=[name=%[1]s,password=%[2]s]\n",
		sec.User, sec.Password)
	return sec, props, scramArgs, nil
}

type certLeaf struct{ certPEM, keyPEM []byte }

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          certSerial(),
		Subject:               pkix.Name{CommonName: "signalstage test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// newLeaf makes a certificate signed by ca: a server certificate for 127.0.0.1 and localhost, or a client one.
func newLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) (certLeaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certLeaf{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: certSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return certLeaf{}, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key) // Kafka's PEM keystore reads PKCS#8 only
	if err != nil {
		return certLeaf{}, err
	}
	return certLeaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}, nil
}

func certSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
