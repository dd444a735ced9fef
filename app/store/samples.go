package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"

	"hearth/migrations"
)

// SampleRow is one persisted metrics sample.
type SampleRow struct {
	bun.BaseModel `bun:"table:samples"`

	VMID      string    `bun:"vm_id"`
	At        time.Time `bun:"at"`
	Source    string    `bun:"source"`
	CPU       *float64  `bun:"cpu"`
	Mem       *float64  `bun:"mem"`
	HostRSS   *int64    `bun:"host_rss"`
	NetRx     *float64  `bun:"net_rx"`
	NetTx     *float64  `bun:"net_tx"`
	DiskRead  *float64  `bun:"disk_read"`
	DiskWrite *float64  `bun:"disk_write"`
	ProgWrite *float64  `bun:"prog_write"` // written into the guest's page cache (agent)
	PageIn    *float64  `bun:"page_in"`    // read from the guest's disks (agent)
}

// MinuteRow is a one-minute average.
type MinuteRow struct {
	bun.BaseModel `bun:"table:samples_1m"`

	VMID      string    `bun:"vm_id,pk"`
	Minute    time.Time `bun:"minute,pk"`
	N         int       `bun:"n"`
	CPU       *float64  `bun:"cpu"`
	Mem       *float64  `bun:"mem"`
	NetRx     *float64  `bun:"net_rx"`
	NetTx     *float64  `bun:"net_tx"`
	DiskRead  *float64  `bun:"disk_read"`
	DiskWrite *float64  `bun:"disk_write"`
	ProgWrite *float64  `bun:"prog_write"` // written into the guest's page cache (agent)
	PageIn    *float64  `bun:"page_in"`    // read from the guest's disks (agent)
}

// InsertSamples writes a round's samples in one statement.
func (db *DB) InsertSamples(ctx context.Context, rows []SampleRow) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		rows[i].At = rows[i].At.UTC().Truncate(time.Microsecond)
	}
	if db.dialect.Name == migrations.Postgres.Name {
		return db.copySamples(ctx, rows)
	}
	if _, err := db.bun.NewInsert().Model(&rows).Exec(ctx); err != nil {
		return db.full(fmt.Errorf("store: insert samples: %w", err))
	}
	return nil
}

var sampleColumns = []string{"vm_id", "at", "source", "cpu", "mem", "host_rss", "net_rx", "net_tx", "disk_read",
	"disk_write", "prog_write", "page_in"}

// copySamples writes a round's samples to PostgreSQL with one COPY: an INSERT of 10,000
// rows spelled out as text took a third of the collector's round there.
func (db *DB) copySamples(ctx context.Context, rows []SampleRow) error {
	conn, err := db.bun.DB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: insert samples: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("not a pgx connection (%T)", dc)
		}
		_, err := sc.Conn().CopyFrom(ctx, pgx.Identifier{"samples"}, sampleColumns, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := &rows[i]
			return []any{r.VMID, r.At, r.Source, r.CPU, r.Mem, r.HostRSS, r.NetRx, r.NetTx, r.DiskRead, r.DiskWrite, r.ProgWrite, r.PageIn}, nil
		}))
		return err
	})
	if err != nil {
		return db.full(fmt.Errorf("store: insert samples: %w", err))
	}
	return nil
}

// Samples returns a VM's raw samples since t, oldest first.
func (db *DB) Samples(ctx context.Context, vmID string, since time.Time) ([]SampleRow, error) {
	var rows []SampleRow
	err := db.bun.NewSelect().Model(&rows).Where("vm_id = ?", vmID).Where("at >= ?", since.UTC()).Order("at").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: read samples: %w", err)
	}
	return rows, nil
}

// LatestSamples returns the newest stored sample since t of each of the VMs named (those
// with none are absent), in one query: the list's badges and figures for other nodes' VMs.
func (db *DB) LatestSamples(ctx context.Context, vmIDs []string, since time.Time) (map[string]SampleRow, error) {
	out := make(map[string]SampleRow, len(vmIDs))
	for start := 0; start < len(vmIDs); start += maxInList {
		ids := vmIDs[start:min(len(vmIDs), start+maxInList)]
		var rows []SampleRow
		newest := db.bun.NewSelect().Table("samples").ColumnExpr("vm_id, MAX(at) AS at").
			Where("vm_id IN (?)", bun.In(ids)).Where("at >= ?", since.UTC()).Group("vm_id")
		err := db.bun.NewSelect().Model(&rows).
			Join("JOIN (?) AS newest ON newest.vm_id = sample_row.vm_id AND newest.at = sample_row.at", newest).Scan(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: read the latest samples: %w", err)
		}
		for _, r := range rows {
			out[r.VMID] = r
		}
	}
	return out, nil
}

// SamplesOf returns the stored samples since t of each of the VMs named, oldest first, in
// one query: the list's sparklines for other nodes' VMs.
func (db *DB) SamplesOf(ctx context.Context, vmIDs []string, since time.Time) (map[string][]SampleRow, error) {
	out := make(map[string][]SampleRow, len(vmIDs))
	for start := 0; start < len(vmIDs); start += maxInList {
		ids := vmIDs[start:min(len(vmIDs), start+maxInList)]
		var rows []SampleRow
		err := db.bun.NewSelect().Model(&rows).Where("vm_id IN (?)", bun.In(ids)).Where("at >= ?", since.UTC()).Order("vm_id", "at").Scan(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: read samples: %w", err)
		}
		for _, r := range rows {
			out[r.VMID] = append(out[r.VMID], r)
		}
	}
	return out, nil
}

// maxInList bounds the ids of one IN (…): SQLite takes at most 32,766 parameters.
const maxInList = 500

// Minutes returns a VM's one-minute averages since t, oldest first.
func (db *DB) Minutes(ctx context.Context, vmID string, since time.Time) ([]MinuteRow, error) {
	var rows []MinuteRow
	err := db.bun.NewSelect().Model(&rows).Where("vm_id = ?", vmID).Where("minute >= ?", since.UTC()).Order("minute").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: read minutes: %w", err)
	}
	return rows, nil
}

// CompactSamples folds raw samples older than rawFor into one-minute averages (merged with
// any average already stored for that minute), deletes them, and drops averages older than
// keepFor. It works in one transaction per call, at most batch raw rows at a time, and
// returns how many raw rows it folded.
func (db *DB) CompactSamples(ctx context.Context, now time.Time, rawFor, keepFor time.Duration, batch int) (int, error) {
	cut := now.Add(-rawFor).UTC()
	folded := 0
	err := db.inTx(ctx, func(tx bun.Tx) error {
		// The batch ends at a timestamp; every row up to and including it is folded and
		// deleted, so rows sharing that timestamp are never deleted unfolded.
		var edge []SampleRow
		if err := tx.NewSelect().Model(&edge).Column("at").Where("at < ?", cut).Order("at").Limit(int64(batch)).Scan(ctx); err != nil {
			return fmt.Errorf("store: read old samples: %w", err)
		}
		var raw []SampleRow
		if len(edge) > 0 {
			if err := tx.NewSelect().Model(&raw).Where("at <= ?", edge[len(edge)-1].At).Where("at < ?", cut).Order("at").Scan(ctx); err != nil {
				return fmt.Errorf("store: read old samples: %w", err)
			}
		}
		type key struct {
			vm     string
			minute time.Time
		}
		type acc struct {
			n    int
			sums [8]float64
			cnts [8]int
		}
		accs := map[key]*acc{}
		var order []key
		var last time.Time
		for _, r := range raw {
			k := key{r.VMID, r.At.UTC().Truncate(time.Minute)}
			a := accs[k]
			if a == nil {
				a = &acc{}
				accs[k] = a
				order = append(order, k)
			}
			a.n++
			for i, v := range []*float64{r.CPU, r.Mem, r.NetRx, r.NetTx, r.DiskRead, r.DiskWrite, r.ProgWrite, r.PageIn} {
				if v != nil {
					a.sums[i] += *v
					a.cnts[i]++
				}
			}
			last = r.At
		}
		for _, k := range order {
			a := accs[k]
			avg := func(i int) *float64 {
				if a.cnts[i] == 0 {
					return nil
				}
				v := a.sums[i] / float64(a.cnts[i])
				return &v
			}
			m := MinuteRow{VMID: k.vm, Minute: k.minute, N: a.n, CPU: avg(0), Mem: avg(1), NetRx: avg(2), NetTx: avg(3), DiskRead: avg(4), DiskWrite: avg(5), ProgWrite: avg(6), PageIn: avg(7)}
			var old MinuteRow
			if err := tx.NewSelect().Model(&old).Where("vm_id = ?", k.vm).Where("minute = ?", k.minute).Scan(ctx); err == nil {
				merge := func(o, n *float64, on, nn int) *float64 { // weighted by sample counts
					switch {
					case o == nil:
						return n
					case n == nil:
						return o
					}
					v := (*o*float64(on) + *n*float64(nn)) / float64(on+nn)
					return &v
				}
				m.CPU, m.Mem = merge(old.CPU, m.CPU, old.N, m.N), merge(old.Mem, m.Mem, old.N, m.N)
				m.NetRx, m.NetTx = merge(old.NetRx, m.NetRx, old.N, m.N), merge(old.NetTx, m.NetTx, old.N, m.N)
				m.DiskRead, m.DiskWrite = merge(old.DiskRead, m.DiskRead, old.N, m.N), merge(old.DiskWrite, m.DiskWrite, old.N, m.N)
				m.ProgWrite, m.PageIn = merge(old.ProgWrite, m.ProgWrite, old.N, m.N), merge(old.PageIn, m.PageIn, old.N, m.N)
				m.N += old.N
				if _, err := tx.NewUpdate().Model(&m).WherePK().Exec(ctx); err != nil {
					return fmt.Errorf("store: update minute: %w", err)
				}
			} else if _, err := tx.NewInsert().Model(&m).Exec(ctx); err != nil {
				return fmt.Errorf("store: insert minute: %w", err)
			}
		}
		if len(raw) > 0 {
			if _, err := tx.NewDelete().Model((*SampleRow)(nil)).Where("at <= ?", last).Where("at < ?", cut).Exec(ctx); err != nil {
				return fmt.Errorf("store: delete folded samples: %w", err)
			}
		}
		if _, err := tx.NewDelete().Model((*MinuteRow)(nil)).Where("minute < ?", now.Add(-keepFor).UTC()).Exec(ctx); err != nil {
			return fmt.Errorf("store: expire minutes: %w", err)
		}
		folded = len(raw)
		return nil
	})
	return folded, err
}
