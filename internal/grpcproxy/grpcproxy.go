// Package grpcproxy puts TLS in front of a plaintext gRPC server (the
// Temporal dev server) for tests of the bridge's Temporal connection
// settings: one proxy demands a client certificate (mTLS), the other an API
// key in the authorization header, as Temporal Cloud does.
package grpcproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"

	"golang.org/x/net/http2"
)

// Proxy is a running proxy.
type Proxy struct {
	// Addr is where it listens.
	Addr string
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
}

// Close stops the proxy.
func (p *Proxy) Close() {
	if p.srv != nil {
		p.srv.Close()
	}
	p.ln.Close()
	p.wg.Wait()
}

// MTLS terminates TLS with cert, demanding a client certificate signed by
// clientCAs, and forwards the connection's bytes to backend. A client
// without such a certificate fails its handshake.
func MTLS(backend string, cert tls.Certificate, clientCAs *x509.CertPool) (*Proxy, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: clientCAs, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(b, c); done <- struct{}{} }()
				go func() { io.Copy(c, b); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return p, nil
}

// APIKey terminates TLS with cert and forwards gRPC requests that carry
// "authorization: Bearer <key>" to backend; any other request is answered
// UNAUTHENTICATED, as gRPC servers answer it.
func APIKey(backend string, cert tls.Certificate, key string) (*Proxy, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	target := &url.URL{Scheme: "http", Host: backend}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.Transport = &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+key {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "16")
			w.Header().Set("Grpc-Message", "invalid API key")
			w.WriteHeader(http.StatusOK)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	if err := http2.ConfigureServer(p.srv, nil); err != nil {
		ln.Close()
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return p, nil
}
