package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ServerOptions tune Serve.
type ServerOptions struct {
	// MaxConns bounds the connections served at once; more wait in the
	// kernel's backlog until one closes. 0 means DefaultMaxConns.
	MaxConns int
	// TLSCertFile and TLSKeyFile, both or neither, turn on TLS.
	TLSCertFile, TLSKeyFile string
	// Log receives the server's own errors (bad handshakes and the like).
	Log *slog.Logger
}

// DefaultMaxConns is the connection bound when none is given.
const DefaultMaxConns = 256

// The server's timeouts: a client must send its headers promptly and may
// not hold an idle connection (and so a slot) for long. There is no write
// timeout: a large layer over a slow link may take hours.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 30 * time.Second
	shutdownTimeout   = 10 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Serve answers on ln with h until ctx is cancelled, then stops accepting,
// lets requests in flight finish for a few seconds and returns nil. It
// closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, o ServerOptions) error {
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		ln.Close()
		return errors.New("serving TLS needs both a certificate and a key file")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	max := o.MaxConns
	if max <= 0 {
		max = DefaultMaxConns
	}
	ln = LimitListener(ln, max)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if o.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("loading the TLS certificate %s and key %s: %w", o.TLSCertFile, o.TLSKeyFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running (a long blob): cut them.
		srv.Close()
	}
	<-done
	return nil
}

// LimitListener accepts at most n connections at once: Accept waits for
// one to close before it takes another from the backlog.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
