package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cached is a collector whose figures are read (from the database) at
// scrape time, at most every CacheFor, so several scrapers do not multiply
// the queries. When the read fails it exports nothing rather than stale
// figures, and logs why.
type Cached struct {
	// Descs are the metrics it may export.
	Descs []*prometheus.Desc
	// Read reads the current figures.
	Read func(ctx context.Context) ([]prometheus.Metric, error)
	// CacheFor is how long figures are reused. Default: 2s.
	CacheFor time.Duration
	// Logger receives read failures. Default: discard.
	Logger *slog.Logger

	mu     sync.Mutex
	at     time.Time
	cached []prometheus.Metric
}

// Describe sends Descs.
func (c *Cached) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.Descs {
		ch <- d
	}
}

// Collect sends the figures, reading them if the cache is older than
// CacheFor.
func (c *Cached) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cacheFor := c.CacheFor
	if cacheFor <= 0 {
		cacheFor = 2 * time.Second
	}
	if c.cached == nil || time.Since(c.at) >= cacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ms, err := c.Read(ctx)
		cancel()
		if err != nil {
			if c.Logger != nil {
				c.Logger.Warn("metrics: cannot read the bridge schema", "error", err)
			}
			c.cached = nil
			return
		}
		c.cached, c.at = ms, time.Now()
	}
	for _, m := range c.cached {
		ch <- m
	}
}
