package store

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed sql/*.sql sql/*.sql.tmpl
var sqlFiles embed.FS

// DB is what the store runs its queries on: a pool, a connection or a
// transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store reads and writes the bridge schema.
type Store struct {
	db     DB
	pool   *pgxpool.Pool
	name   string // the schema, unquoted
	quoted string
	q      map[string]string
}

// New returns a store of the bridge schema named schema on pool. The
// schema name comes resolved from the configuration; it is required.
func New(pool *pgxpool.Pool, schema string) *Store {
	if schema == "" {
		panic("store.New: no schema name (the configuration resolves it)")
	}
	return &Store{db: pool, pool: pool, name: schema, quoted: pgx.Identifier{schema}.Sanitize(), q: rendered(schema)}
}

// On returns the same store running its queries on db, a connection or a
// transaction.
func (s *Store) On(db DB) *Store {
	c := *s
	c.db = db
	return &c
}

// InTx runs fn with the store bound to a new transaction, committed when fn
// returns nil.
func (s *Store) InTx(ctx context.Context, fn func(tx *Store) error) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return fn(s.On(tx)) })
}

// Schema returns the bridge schema's name.
func (s *Store) Schema() string { return s.name }

// Pool returns the pool the store was made with.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// DB returns what the store's queries run on.
func (s *Store) DB() DB { return s.db }

// sql returns the named query, rendered for this schema. A name that is not
// in sql/*.sql is a programming error, caught by the tests.
func (s *Store) sql(name string) string {
	q, ok := s.q[name]
	if !ok {
		panic("store: no query named " + name)
	}
	return q
}

// render renders a query template (sql/*.sql.tmpl) with data, for the few
// queries whose shape depends on the configuration (the capture triggers,
// and reconcile's legacy side).
func (s *Store) render(name string, data map[string]any) (string, error) {
	text, err := sqlFiles.ReadFile("sql/" + name + ".sql.tmpl")
	if err != nil {
		return "", fmt.Errorf("store: no template %s: %w", name, err)
	}
	if data == nil {
		data = map[string]any{}
	}
	data["Schema"] = s.quoted
	t, err := template.New(name).Parse(string(text))
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// SQL returns a named query as rendered for this schema, for tests.
func (s *Store) SQL(name string) string { return s.sql(name) }

// Names returns the names of every query, for tests that prepare them all.
func (s *Store) Names() []string {
	names := make([]string, 0, len(s.q))
	for n := range s.q {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var (
	parseOnce sync.Once
	parsed    map[string]*template.Template
	renderMu  sync.Mutex
	renders   = map[string]map[string]string{}
)

// rendered returns every named query rendered for schema, once per schema.
func rendered(schema string) map[string]string {
	parseOnce.Do(func() { parsed = parseQueries() })
	renderMu.Lock()
	defer renderMu.Unlock()
	if q, ok := renders[schema]; ok {
		return q
	}
	data := map[string]string{"Schema": pgx.Identifier{schema}.Sanitize()}
	q := make(map[string]string, len(parsed))
	for name, t := range parsed {
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			panic(fmt.Sprintf("store: query %s: %v", name, err))
		}
		q[name] = strings.TrimSpace(buf.String())
	}
	renders[schema] = q
	return q
}

// parseQueries reads sql/*.sql, where each query starts with a line
// "-- name: Name" and runs to the next one.
func parseQueries() map[string]*template.Template {
	out := map[string]*template.Template{}
	files, err := fs.Glob(sqlFiles, "sql/*.sql")
	if err != nil {
		panic(err)
	}
	for _, f := range files {
		b, err := sqlFiles.ReadFile(f)
		if err != nil {
			panic(err)
		}
		for name, body := range splitNamed(string(b)) {
			if _, dup := out[name]; dup {
				panic("store: query " + name + " is defined twice")
			}
			out[name] = template.Must(template.New(name).Parse(body))
		}
	}
	return out
}

// Now returns the database's clock, which legacy transaction times also
// come from.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.db.QueryRow(ctx, s.sql("Now")).Scan(&t)
	return t, err
}
