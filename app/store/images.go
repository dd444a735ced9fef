package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type imageRow struct {
	bun.BaseModel `bun:"table:images"`

	Node      string    `bun:"node,pk"`
	Name      string    `bun:"name,pk"`
	State     string    `bun:"state"`
	Kernel    string    `bun:"kernel"`
	Vmlinux   string    `bun:"vmlinux"`
	Initrd    string    `bun:"initrd"`
	Rootfs    string    `bun:"rootfs"`
	BootArgs  string    `bun:"boot_args"`
	Arch      string    `bun:"arch"`
	Init      string    `bun:"init_system"`
	CloudInit bool      `bun:"cloud_init"`
	Files     string    `bun:"files"`
	Source    string    `bun:"source"`
	Reference string    `bun:"reference"`
	Steps     string    `bun:"steps"`
	Error     string    `bun:"error"`
	Log       string    `bun:"log"`
	CreatedAt time.Time `bun:"created_at"`
	UpdatedAt time.Time `bun:"updated_at"`
}

func (r *imageRow) toImage() (*app.Image, error) {
	im := &app.Image{Name: r.Name, Node: r.Node, State: app.ImageState(r.State), Kernel: r.Kernel, Vmlinux: r.Vmlinux, Initrd: r.Initrd,
		Rootfs: r.Rootfs, BootArgs: r.BootArgs, Arch: r.Arch, Init: r.Init, CloudInit: r.CloudInit, Source: r.Source,
		Reference: r.Reference, Error: r.Error, Log: r.Log, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if err := json.Unmarshal([]byte(r.Files), &im.Files); err != nil {
		return nil, fmt.Errorf("store: image %s files: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(r.Steps), &im.Steps); err != nil {
		return nil, fmt.Errorf("store: image %s steps: %w", r.Name, err)
	}
	return im, nil
}

func fromImage(im *app.Image) (*imageRow, error) {
	files, err := json.Marshal(im.Files)
	if err != nil {
		return nil, err
	}
	steps, err := json.Marshal(im.Steps)
	if err != nil {
		return nil, err
	}
	if im.Files == nil {
		files = []byte("[]")
	}
	if im.Steps == nil {
		steps = []byte("[]")
	}
	return &imageRow{Node: im.Node, Name: im.Name, State: string(im.State), Kernel: im.Kernel, Vmlinux: im.Vmlinux, Initrd: im.Initrd,
		Rootfs: im.Rootfs, BootArgs: im.BootArgs, Arch: im.Arch, Init: im.Init, CloudInit: im.CloudInit, Files: string(files),
		Source: im.Source, Reference: im.Reference, Steps: string(steps), Error: app.Clip(im.Error, MaxDetail),
		Log: app.Clip(im.Log, maxImageLog), CreatedAt: im.CreatedAt, UpdatedAt: im.UpdatedAt}, nil
}

// maxImageLog bounds the build log kept with an image: its newest lines, for the page.
const maxImageLog = 8 << 10

// CreateImage records a new image (usually building) on its node and e, at once. A name
// the node has taken is ECONFLICT.
func (db *DB) CreateImage(ctx context.Context, im *app.Image, e *app.AuditEntry) error {
	im.CreatedAt = now()
	im.UpdatedAt = im.CreatedAt
	r, err := fromImage(im)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(r).Exec(ctx); err != nil {
			if isUnique(err) {
				return app.Errorf(app.ECONFLICT, "an image named %q already exists on node %s", im.Name, im.Node)
			}
			return fmt.Errorf("store: insert image: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// UpdateImage writes everything of an image but its node, name and creation, and e, at once.
func (db *DB) UpdateImage(ctx context.Context, im *app.Image, e *app.AuditEntry) error {
	im.UpdatedAt = now()
	r, err := fromImage(im)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewUpdate().Model(r).ExcludeColumn("node", "name", "created_at").WherePK().Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: update image: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return app.Errorf(app.ENOTFOUND, "image %q not found on node %s", im.Name, im.Node)
		}
		return audit(ctx, tx, e)
	})
}

// Image returns node's image of that name with the VMs made from it, or ENOTFOUND. An
// image from before nodes (no node yet, until the first node to start claims it) is anyone's
// of that name: a command run after the upgrade, before any serve, still finds it.
func (db *DB) Image(ctx context.Context, node, name string) (*app.Image, error) {
	var r imageRow
	if err := db.bun.NewSelect().Model(&r).Where("node IN (?, '') AND name = ?", node, name).OrderExpr("node DESC").Limit(1).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, app.Errorf(app.ENOTFOUND, "node %s has no image named %q", node, name)
		}
		return nil, fmt.Errorf("store: read image: %w", err)
	}
	im, err := r.toImage()
	if err != nil {
		return nil, err
	}
	im.UsedBy, err = db.vmsOfImage(ctx, db.bun, r.Node, name)
	return im, err
}

// ImageNodes returns the nodes that have an image of that name, and in which state, by
// node name.
func (db *DB) ImageNodes(ctx context.Context, name string) ([]app.Image, error) {
	var rows []imageRow
	if err := db.bun.NewSelect().Model(&rows).Column("node", "name", "state").Where("name = ?", name).Order("node").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: nodes of image: %w", err)
	}
	out := make([]app.Image, len(rows))
	for i, r := range rows {
		out[i] = app.Image{Node: r.Node, Name: r.Name, State: app.ImageState(r.State)}
	}
	return out, nil
}

// Images returns every node's images, newest first, with the VMs made from each.
func (db *DB) Images(ctx context.Context) ([]*app.Image, error) {
	var rows []imageRow
	if err := db.bun.NewSelect().Model(&rows).Order("created_at DESC", "name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: list images: %w", err)
	}
	var users []struct {
		Name  string `bun:"name"`
		Node  string `bun:"node"`
		Image string `bun:"image"`
	}
	if err := db.bun.NewSelect().Table("vms").Column("name", "node", "image").Where("image <> ''").Order("name").Scan(ctx, &users); err != nil {
		return nil, fmt.Errorf("store: vms of images: %w", err)
	}
	by := map[[2]string][]string{}
	for _, u := range users {
		k := [2]string{u.Node, u.Image}
		by[k] = append(by[k], u.Name)
	}
	out := make([]*app.Image, len(rows))
	for i := range rows {
		im, err := rows[i].toImage()
		if err != nil {
			return nil, err
		}
		im.UsedBy = by[[2]string{im.Node, im.Name}]
		out[i] = im
	}
	return out, nil
}

func (db *DB) vmsOfImage(ctx context.Context, idb bun.IDB, node, name string) ([]string, error) {
	var names []string
	if err := idb.NewSelect().Table("vms").Column("name").Where("node = ? AND image = ?", node, name).Order("name").Scan(ctx, &names); err != nil {
		return nil, fmt.Errorf("store: vms of image: %w", err)
	}
	return names, nil
}

// DeleteImage removes node's image record and writes e, at once, unless VMs were made from
// it: then it is ECONFLICT naming them (checked in the same transaction, so no VM can be
// made from it meanwhile).
func (db *DB) DeleteImage(ctx context.Context, node, name string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		users, err := db.vmsOfImage(ctx, tx, node, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return app.Errorf(app.ECONFLICT, "image %s is used by %d VM(s): %s; delete them (or give them their own files) first",
				name, len(users), joinNames(users))
		}
		res, err := tx.NewDelete().Model((*imageRow)(nil)).Where("node = ? AND name = ?", node, name).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: delete image: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return app.Errorf(app.ENOTFOUND, "node %s has no image named %q", node, name)
		}
		return audit(ctx, tx, e)
	})
}

// FailBuildingImages marks node's images left building by a previous manager process of
// it as failed (other nodes' builds are theirs).
func (db *DB) FailBuildingImages(ctx context.Context, node, reason string) (int64, error) {
	res, err := db.bun.NewUpdate().Model((*imageRow)(nil)).Set("state = ?", app.ImageFailed).Set("error = ?", reason).
		Set("updated_at = ?", now()).Where("state = ? AND node = ?", app.ImageBuilding, node).Exec(ctx)
	if err != nil {
		return 0, db.full(fmt.Errorf("store: fail building images: %w", err))
	}
	return res.RowsAffected()
}

func joinNames(names []string) string {
	const most = 10
	s := ""
	for i, n := range names {
		if i == most {
			return s + fmt.Sprintf(" and %d more", len(names)-most)
		}
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
