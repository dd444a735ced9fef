package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

type settingRow struct {
	bun.BaseModel `bun:"table:settings"`

	Key       string    `bun:"key,pk"`
	Value     string    `bun:"value"`
	UpdatedAt time.Time `bun:"updated_at"`
}

// Setting returns a value the manager kept, "" when there is none.
func (db *DB) Setting(ctx context.Context, key string) (string, error) {
	var r settingRow
	err := db.bun.NewSelect().Model(&r).Where("key = ?", key).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: read setting %s: %w", key, err)
	}
	return r.Value, nil
}

// SetSetting keeps a value.
func (db *DB) SetSetting(ctx context.Context, key, value string) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		_, err := tx.NewInsert().Model(&settingRow{Key: key, Value: value, UpdatedAt: now()}).
			On("CONFLICT (key) DO UPDATE").Set("value = EXCLUDED.value").Set("updated_at = EXCLUDED.updated_at").Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: keep setting %s: %w", key, err)
		}
		return nil
	})
}

// SettingsWithPrefix returns the kept values whose keys start with prefix, by key.
func (db *DB) SettingsWithPrefix(ctx context.Context, prefix string) (map[string]string, error) {
	var rows []settingRow
	if err := db.bun.NewSelect().Model(&rows).Where("key LIKE ? ESCAPE '\\'", likePrefix(prefix)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read settings %s*: %w", prefix, err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.Key] = r.Value
	}
	return out, nil
}

func likePrefix(p string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(p) + "%"
}
