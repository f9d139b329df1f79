package serve_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
)

// TestHTTPLetsGoOfIdleAndSlowClients: idle keep-alive connections and a
// client that never finishes its body are let go by the server's timeouts,
// not held for ever.
func TestHTTPLetsGoOfIdleAndSlowClients(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{Token: "test-token-0123456789abcdef", HTTP: func(s *http.Server) {
		s.IdleTimeout, s.ReadTimeout = 300*time.Millisecond, time.Second
	}})
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := io.ReadAll(c)
		return err == nil // EOF: the server closed it; a timeout would be an error
	}
	var idle []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", b.Srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", err, resp)
		}
		resp.Body.Close()
		idle = append(idle, c)
	}
	for i, c := range idle {
		if !closed(c) {
			t.Fatalf("idle connection %d was not closed", i)
		}
	}
	slow, err := net.Dial("tcp", b.Srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "POST /api/v1/cycles/1/reports/1/phases/planning/start HTTP/1.1\r\nHost: x\r\n"+
		"Authorization: Bearer test-token-0123456789abcdef\r\nContent-Length: 1000\r\n\r\n{\"actor\":")
	if !closed(slow) {
		t.Fatal("a client that never finished its body was held")
	}
}

// TestHTTPS: with http.tls_cert_file and http.tls_key_file, serve speaks
// HTTPS only.
func TestHTTPS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{Configure: func(c *config.Config) {
		c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile = certFile, keyFile
	}})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + b.Srv.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("https healthz: %d %q", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + b.Srv.Addr() + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was served")
	}
}

// TestTokenFileMustBePrivate: a token file others can read is refused.
func TestTokenFileMustBePrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("test-token-0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.TokenFile = path
	if _, err := cfg.Token(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable token file: %v", err)
	}
	os.Chmod(path, 0o600)
	if tok, err := cfg.Token(); err != nil || tok != "test-token-0123456789abcdef" {
		t.Errorf("a private token file: %q %v", tok, err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dtebridge test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
