package store

import "github.com/uptrace/bun"

// AddQueryHook lets external tests watch (and interrupt) the store's queries.
func (db *DB) AddQueryHook(h bun.QueryHook) { db.bun.AddQueryHook(h) }

// Bun gives external tests the underlying handle.
func (db *DB) Bun() *bun.DB { return db.bun }
