package sqlite

import (
	"context"
	"database/sql"
)

// Prepared statements. database/sql prepares a statement afresh for every
// tx.ExecContext / tx.QueryContext; the store's queries are a fixed set of
// constant strings, so each one is prepared once on the database the first
// time it is seen and used through tx.StmtContext afterwards.
//
// A statement cannot be prepared on s.db while a transaction holds the only
// connection, so a query met inside a transaction runs unprepared that time
// and is prepared before the next transaction begins (under mu, when the
// connection is idle).

// txn is a transaction whose ExecContext, QueryContext and QueryRowContext
// run prepared statements. It satisfies querier. Its statements run under
// the context the transaction began with (run gives it one without
// cancellation), not the one passed to each call: a cancellable context
// costs a watcher goroutine per statement in the driver, and a transaction
// is only ever abandoned as a whole.
type txn struct {
	tx    *sql.Tx
	s     *Store
	ctx   context.Context
	local map[string]*sql.Stmt // tx-bound statements, by query
	delta counts               // changes of the statistics (stats.go), added on commit
}

// stmt returns the statement of query bound to t, or nil if query is not
// prepared yet (it will be before the next transaction).
func (t *txn) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := t.local[query]; st != nil {
		return st
	}
	p, ok := t.s.stmts[query]
	if !ok {
		t.s.wanted[query] = true
		return nil
	}
	if p == nil { // could not be prepared: always run as is
		return nil
	}
	st := t.tx.StmtContext(ctx, p)
	if t.local == nil {
		t.local = make(map[string]*sql.Stmt)
	}
	t.local[query] = st
	return st
}

func (t *txn) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	ctx := t.ctx
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t *txn) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx := t.ctx
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t *txn) QueryRowContext(_ context.Context, query string, args ...any) *sql.Row {
	ctx := t.ctx
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// prepareWanted prepares the queries met since the last call. The caller
// holds mu (or owns s during Open) and no transaction is open. A query that
// fails to prepare is remembered as such and keeps running unprepared (its
// error, if any, shows when it runs).
func (s *Store) prepareWanted(ctx context.Context) {
	for q := range s.wanted {
		delete(s.wanted, q)
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			s.log.Debug("statement not prepared", "err", err)
			st = nil
		}
		s.stmts[q] = st
	}
}

// closeStmts closes the prepared statements (before the database).
func (s *Store) closeStmts() {
	for q, st := range s.stmts {
		if st != nil {
			_ = st.Close()
		}
		delete(s.stmts, q)
	}
}
