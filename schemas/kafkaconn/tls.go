package kafkaconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// TLS is a client's TLS settings, shared by the Kafka clients and the sink's ClickHouse connection. Files are
// PEM. With Enabled and no CAFile the host's root CAs are trusted (a managed service with a public certificate).
type TLS struct {
	// Enabled turns TLS on; setting CAFile or CertFile turns it on too.
	Enabled bool
	// CAFile is the CA bundle that verifies the server (default: the host's roots).
	CAFile string
	// CertFile and KeyFile are the client certificate and its key, for servers that require one (mutual TLS).
	// Both or neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry (default: the host of the address dialled).
	ServerName string

	prefix string // flag prefix for error messages ("kafka-tls", "clickhouse-tls")
}

// RegisterTLS registers -<prefix>, -<prefix>-ca-file, -<prefix>-cert-file (with clientCert), -<prefix>-key-file
// and -<prefix>-server-name on fs (their variables come from schemas/envflag's rule: SIGNALSTAGE_KAFKA_TLS_CA_FILE
// for -kafka-tls-ca-file). what names the server, for -h.
func RegisterTLS(fs *flag.FlagSet, prefix, what string, clientCert bool) *TLS {
	t := &TLS{prefix: prefix}
	fs.BoolVar(&t.Enabled, prefix, false, fmt.Sprintf("connect to %s over TLS; implied by -%s-ca-file", what, prefix))
	fs.StringVar(&t.CAFile, prefix+"-ca-file", "", fmt.Sprintf("PEM CA bundle verifying %s (default the host's roots)", what))
	if clientCert {
		fs.StringVar(&t.CertFile, prefix+"-cert-file", "",
			fmt.Sprintf("PEM client certificate for %s requiring one, with -%s-key-file", what, prefix))
		fs.StringVar(&t.KeyFile, prefix+"-key-file", "", fmt.Sprintf("PEM key of -%s-cert-file", prefix))
	}
	fs.StringVar(&t.ServerName, prefix+"-server-name", "", fmt.Sprintf("name %s's certificate must carry (default the host dialled)", what))
	return t
}

// On reports whether TLS is in use.
func (t *TLS) On() bool { return t != nil && (t.Enabled || t.CAFile != "" || t.CertFile != "") }

// Config returns the tls.Config, or nil when TLS is off. Errors name the flag of the bad file.
func (t *TLS) Config() (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	p := t.prefix
	if p == "" {
		p = "tls"
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-%s-ca-file: %w", p, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-%s-ca-file: %s holds no PEM certificate", p, t.CAFile)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("-%s-cert-file, -%s-key-file: %w", p, p, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, fmt.Errorf("-%s-cert-file and -%s-key-file: %w", p, p, errors.New("give both or neither"))
	}
	return c, nil
}
