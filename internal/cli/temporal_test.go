package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/grpcproxy"
	"github.com/synapsedte/dtebridge/internal/testenv"
)

// pki is a test CA with certificates it signed.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	pool   *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate (by this CA, or self-signed) and writes it and
// its key.
func (p *pki) issue(t *testing.T, name string, server, selfSigned bool) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")}
	}
	parent, signer := p.ca, p.caKey
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// mapEnv is an environment of its own, so parallel tests do not share the
// process's.
type mapEnv map[string]string

func (m mapEnv) Environ() []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func (m mapEnv) LookupEnv(k string) (string, bool) { v, ok := m[k]; return v, ok }

func dialWith(t *testing.T, f temporalFlags) (client.Client, error) {
	t.Helper()
	g := &globals{Temporal: f, SDKLogger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return g.dialTemporal(ctx, nil, "")
}

// TestTemporalMTLSAndAPIKey reaches a real Temporal server behind a proxy
// that demands a client certificate, and behind one that demands an API
// key: the right credentials connect (and the operator API answers), a
// missing or wrong one is refused with a clear error.
func TestTemporalMTLSAndAPIKey(t *testing.T) {
	t.Parallel()
	backend := testenv.Temporal(t).Address()
	p := newPKI(t)
	serverCert, _, _ := p.issue(t, "server", true, false)
	_, clientCert, clientKey := p.issue(t, "client", false, false)
	_, rogueCert, rogueKey := p.issue(t, "rogue", false, true)

	mtls, err := grpcproxy.MTLS(backend, serverCert, p.pool)
	if err != nil {
		t.Fatal(err)
	}
	defer mtls.Close()
	c, err := dialWith(t, temporalFlags{Address: mtls.Addr, TLSCert: clientCert, TLSKey: clientKey, TLSCA: p.caFile})
	if err != nil {
		t.Fatalf("mTLS with the right certificate: %v", err)
	}
	if _, err := c.OperatorService().ListSearchAttributes(context.Background(), &operatorservice.ListSearchAttributesRequest{Namespace: "default"}); err != nil {
		t.Errorf("the operator API through mTLS: %v", err)
	}
	c.Close()
	for name, f := range map[string]temporalFlags{
		"NoClientCertificate": {Address: mtls.Addr, TLSCA: p.caFile},
		"RogueCertificate":    {Address: mtls.Addr, TLSCert: rogueCert, TLSKey: rogueKey, TLSCA: p.caFile},
		"PlainText":           {Address: mtls.Addr},
	} {
		if c, err := dialWith(t, f); err == nil {
			c.Close()
			t.Errorf("%s: connected", name)
		} else if !strings.Contains(err.Error(), "error connecting to Temporal at "+mtls.Addr) || !strings.Contains(err.Error(), "certificates") {
			t.Errorf("%s: unclear error: %v", name, err)
		}
	}

	apikey, err := grpcproxy.APIKey(backend, serverCert, "sekret-key")
	if err != nil {
		t.Fatal(err)
	}
	defer apikey.Close()
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("sekret-key\n"), 0o600)
	if c, err := dialWith(t, temporalFlags{Address: apikey.Addr, APIKeyFile: keyFile, TLSCA: p.caFile}); err != nil {
		t.Fatalf("the right API key: %v", err)
	} else {
		c.Close()
	}
	os.WriteFile(keyFile, []byte("wrong-key\n"), 0o600)
	if c, err := dialWith(t, temporalFlags{Address: apikey.Addr, APIKeyFile: keyFile, TLSCA: p.caFile}); err == nil {
		c.Close()
		t.Error("a wrong API key connected")
	} else if !strings.Contains(err.Error(), "invalid API key") {
		t.Errorf("a wrong API key: %v", err)
	}
}

// TestTemporalSettingsLayering: the Temporal CLI's environment is read,
// the config file's temporal section goes over it, and flags over both.
func TestTemporalSettingsLayering(t *testing.T) {
	t.Parallel()
	env := mapEnv{"TEMPORAL_ADDRESS": "env:7233", "TEMPORAL_NAMESPACE": "env-ns", "TEMPORAL_API_KEY": "env-key"}
	opts, err := temporalOptions(temporalFlags{}, nil, env)
	if err != nil || opts.HostPort != "env:7233" || opts.Namespace != "env-ns" || opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Fatalf("from the environment: %v %+v", err, opts)
	}
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Temporal.Namespace = "cfg-ns"
	opts, err = temporalOptions(temporalFlags{Address: "flag:7233"}, cfg, env)
	if err != nil || opts.HostPort != "flag:7233" || opts.Namespace != "cfg-ns" {
		t.Fatalf("layered: %v %s %s", err, opts.HostPort, opts.Namespace)
	}
	opts, err = temporalOptions(temporalFlags{}, nil, mapEnv{})
	if err != nil || opts.HostPort != "" || opts.Namespace != "default" {
		t.Fatalf("with nothing set: %v %+v", err, opts)
	}
}
