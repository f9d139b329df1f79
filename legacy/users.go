package legacy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
)

// ErrUnknownActor means an actor is not in the users table.
var ErrUnknownActor = errors.New("unknown actor")

// Users resolves legacy users to their roles, from the configured users
// table. It is the one place that says who an actor is: the mirror uses it
// to judge the roles of legacy writes, and engine commands use it to check
// who is acting.
type Users struct {
	pool    *pgxpool.Pool
	cfg     UsersTable
	refresh time.Duration

	mu     sync.Mutex
	roles  map[string]string
	loaded time.Time
	// failed is the last load's error, cleared by a load that works.
	failed error
	// OnError, if set, is called when lookups begin to fail, and with nil
	// when they work again (serve turns it into health and a metric).
	OnError func(error)
}

// NewUsers returns a resolver of the users table cfg on pool.
func NewUsers(pool *pgxpool.Pool, cfg UsersTable) *Users {
	return &Users{pool: pool, cfg: cfg, refresh: time.Minute}
}

// Enrich sets StartedByRole and CompletedByRole where the actors are known,
// from a cache of the users table refreshed every minute, and at most every
// five seconds when an actor is missing.
func (u *Users) Enrich(ctx context.Context, changes []dtetype.PhaseChange) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	missing := false
	for i := range changes {
		c := &changes[i]
		for _, p := range []struct {
			id   string
			role *string
		}{{c.StartedBy, &c.StartedByRole}, {c.CompletedBy, &c.CompletedByRole}} {
			if p.id == "" {
				continue
			}
			role, ok := u.roles[p.id]
			missing = missing || !ok
			*p.role = role
		}
	}
	if (missing && time.Since(u.loaded) > 5*time.Second) || time.Since(u.loaded) > u.refresh {
		if err := u.load(ctx); err != nil {
			return err
		}
		for i := range changes {
			c := &changes[i]
			c.StartedByRole, c.CompletedByRole = u.roles[c.StartedBy], u.roles[c.CompletedBy]
		}
	}
	return nil
}

func (u *Users) load(ctx context.Context) error {
	q := fmt.Sprintf(`SELECT %s::text, %s::text FROM %s`, Col("", u.cfg.ID), Col("", u.cfg.Role), Ident(u.cfg.Table))
	rows, err := u.pool.Query(ctx, q)
	if err != nil {
		u.loaded = time.Now() // do not hammer a missing table
		return u.fail(fmt.Errorf("error reading roles from %s: %w", u.cfg.Table, err))
	}
	defer rows.Close()
	roles := map[string]string{}
	for rows.Next() {
		var id, role *string
		if err := rows.Scan(&id, &role); err != nil {
			return u.fail(fmt.Errorf("error reading roles from %s: %w", u.cfg.Table, err))
		}
		if id != nil && role != nil {
			roles[*id] = *role
		}
	}
	if err := rows.Err(); err != nil {
		return u.fail(fmt.Errorf("error reading roles from %s: %w", u.cfg.Table, err))
	}
	u.roles, u.loaded = roles, time.Now()
	u.fail(nil)
	return nil
}

func (u *Users) fail(err error) error {
	if u.OnError != nil && (err == nil) != (u.failed == nil) {
		u.OnError(err) // on a change only: failing, or working again
	}
	u.failed = err
	return err
}

// Resolve looks actor up in the users table now (not in the cache) and
// returns their role; ErrUnknownActor if there is no such user.
func (u *Users) Resolve(ctx context.Context, actor string) (string, error) {
	q := fmt.Sprintf(`SELECT %s::text FROM %s WHERE %s::text = $1 LIMIT 1`, Col("", u.cfg.Role), Ident(u.cfg.Table), Col("", u.cfg.ID))
	var role *string
	err := u.pool.QueryRow(ctx, q, actor).Scan(&role)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("%w %q: no row in %s has %s = %q", ErrUnknownActor, actor, u.cfg.Table, u.cfg.ID, actor)
	case err != nil:
		return "", fmt.Errorf("error looking up actor %q in %s: %w", actor, u.cfg.Table, err)
	case role == nil:
		return "", nil
	}
	return *role, nil
}

// Err returns the last lookup's error, nil while lookups work.
func (u *Users) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.failed
}
