package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/pkg/lock"
)

// Options configure Serve.
type Options struct {
	// Addr is where to listen, e.g. ":8443".
	Addr string
	// CertFile and KeyFile hold the serving certificate and key (PEM);
	// they are reloaded when they change.
	CertFile, KeyFile string
	// LockFile and RulesFile are watched and reloaded; either may be "".
	LockFile, RulesFile string
	// Rules are fixed prefix rules (--map), applied with the rules file's.
	Rules  []Rule
	Policy Policy
	// PollInterval is how often the files are checked; 1s when zero.
	PollInterval time.Duration
	// ShutdownTimeout bounds the wait for requests in flight; 10s when zero.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
}

// Serve answers AdmissionReviews over HTTPS until ctx is cancelled, then
// shuts down gracefully. Files that cannot be read at start are an error;
// later, a broken file is logged and the last good content stays in force.
func Serve(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	log := o.Logger
	src := &mappingSource{rules: o.Rules}
	certs := &certStore{}
	var watches []*watch
	if o.LockFile != "" {
		watches = append(watches, &watch{what: "lock", paths: []string{o.LockFile}, apply: src.setLock})
	}
	if o.RulesFile != "" {
		watches = append(watches, &watch{what: "rules", paths: []string{o.RulesFile}, apply: src.setRules})
	}
	for _, w := range watches {
		if _, err := w.poll(); err != nil {
			return err
		}
	}
	m, err := src.mapping()
	if err != nil {
		return err
	}
	certWatch := &watch{what: "certificate", paths: []string{o.CertFile, o.KeyFile}, apply: certs.set}
	if _, err := certWatch.poll(); err != nil {
		return err
	}
	h := NewHandler(m, o.Policy, log)

	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", o.Addr); err != nil {
			return fmt.Errorf("listening on %s: %w", o.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving admission reviews", "addr", ln.Addr().String(), "lock", o.LockFile, "rules", o.RulesFile,
		"maps", len(o.Rules), "mutateWorkloads", o.Policy.MutateWorkloads, "denyLatest", o.Policy.DenyLatest, "requireLocked", o.Policy.RequireLocked)

	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()

	ticker := time.NewTicker(o.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case err := <-served:
			return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.ShutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutting down: %w", err)
			}
			if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
			}
			return nil
		case <-ticker.C:
			reload := false
			for _, w := range watches {
				changed, err := w.poll()
				if err != nil {
					log.Error("refusing changed file: keeping the last good mapping", "file", w.what, "err", err)
				}
				reload = reload || changed
			}
			if reload {
				m, err := src.mapping()
				if err != nil {
					log.Error("refusing new mapping: keeping the last good one", "err", err)
				} else {
					h.SetMapping(m)
					log.Info("mapping reloaded", "lockImages", m.lockImages, "rules", len(m.rules))
				}
			}
			if changed, err := certWatch.poll(); err != nil {
				log.Error("refusing changed certificate: keeping the last good one", "err", err)
			} else if changed {
				log.Info("certificate reloaded", "cert", o.CertFile)
			}
		}
	}
}

// watch polls files and hands their content to apply when it changes. Files
// are small, so hashing them on every tick is cheap and catches rewrites that
// keep the size and modification time.
type watch struct {
	what  string
	paths []string
	apply func(contents [][]byte) error
	// seen is the hash last handled, good or bad, so a broken file is
	// reported once and not on every tick.
	seen [sha256.Size]byte
	// readErr is the last read error reported.
	readErr string
	started bool
}

// poll reports whether new content was applied.
func (w *watch) poll() (bool, error) {
	contents := make([][]byte, len(w.paths))
	h := sha256.New()
	for i, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			err = fmt.Errorf("reading %s: %w", w.what, err)
			if err.Error() == w.readErr {
				// Reported already; nothing new to say.
				return false, nil
			}
			w.readErr = err.Error()
			return false, err
		}
		contents[i] = b
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	w.readErr = ""
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if w.started && sum == w.seen {
		return false, nil
	}
	w.started, w.seen = true, sum
	if err := w.apply(contents); err != nil {
		return false, fmt.Errorf("%s: %w", w.paths[0], err)
	}
	return true, nil
}

// mappingSource keeps the last good lock and rules file.
type mappingSource struct {
	lock      *lock.File
	rules     []Rule
	fileRules []Rule
}

func (s *mappingSource) setLock(c [][]byte) error {
	f, err := lock.Parse(c[0])
	if err != nil {
		return err
	}
	s.lock = f
	return nil
}

func (s *mappingSource) setRules(c [][]byte) error {
	rules, err := ParseRules(c[0])
	if err != nil {
		return err
	}
	// Refuse rules that contradict the --map flags now, so the file is
	// reported as the broken one.
	if _, err := NewMapping(nil, append(append([]Rule(nil), s.rules...), rules...)); err != nil {
		return err
	}
	s.fileRules = rules
	return nil
}

func (s *mappingSource) mapping() (*Mapping, error) {
	rules := append(append([]Rule(nil), s.rules...), s.fileRules...)
	return NewMapping(s.lock, rules)
}

// certStore hands the TLS stack the last good certificate.
type certStore struct {
	cert atomic.Pointer[tls.Certificate]
}

func (c *certStore) set(contents [][]byte) error {
	cert, err := tls.X509KeyPair(contents[0], contents[1])
	if err != nil {
		return fmt.Errorf("loading certificate and key: %w", err)
	}
	c.cert.Store(&cert)
	return nil
}

func (c *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }
