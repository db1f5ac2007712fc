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

// RegisterTLS registers -<prefix>, -<prefix>-ca-file, -<prefix>-cert-file, -<prefix>-key-file and
// -<prefix>-server-name on fs, each with its variable <envPrefix>, <envPrefix>_CA_FILE, ... as the default.
// what names the server, for -h.
func RegisterTLS(fs *flag.FlagSet, prefix, envPrefix, what string, clientCert bool) *TLS {
	t := &TLS{prefix: prefix}
	fs.BoolVar(&t.Enabled, prefix, envBool(envPrefix), fmt.Sprintf("connect to %s over TLS; implied by -%s-ca-file (env %s)", what, prefix, envPrefix))
	fs.StringVar(&t.CAFile, prefix+"-ca-file", os.Getenv(envPrefix+"_CA_FILE"),
		fmt.Sprintf("PEM CA bundle verifying %s (env %s_CA_FILE; default the host's roots)", what, envPrefix))
	if clientCert {
		fs.StringVar(&t.CertFile, prefix+"-cert-file", os.Getenv(envPrefix+"_CERT_FILE"),
			fmt.Sprintf("PEM client certificate for %s requiring one, with -%s-key-file (env %s_CERT_FILE)", what, prefix, envPrefix))
		fs.StringVar(&t.KeyFile, prefix+"-key-file", os.Getenv(envPrefix+"_KEY_FILE"),
			fmt.Sprintf("PEM key of -%s-cert-file (env %s_KEY_FILE)", prefix, envPrefix))
	}
	fs.StringVar(&t.ServerName, prefix+"-server-name", os.Getenv(envPrefix+"_SERVER_NAME"),
		fmt.Sprintf("name %s's certificate must carry (env %s_SERVER_NAME; default the host dialled)", what, envPrefix))
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

func envBool(name string) bool {
	switch os.Getenv(name) {
	case "1", "true", "TRUE", "True", "yes", "on":
		return true
	}
	return false
}

// TLSVariables returns the variables RegisterTLS reads for envPrefix.
func TLSVariables(envPrefix string) []string {
	return []string{envPrefix, envPrefix + "_CA_FILE", envPrefix + "_CERT_FILE", envPrefix + "_KEY_FILE", envPrefix + "_SERVER_NAME"}
}
