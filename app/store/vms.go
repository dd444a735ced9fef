package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type vmRow struct {
	bun.BaseModel `bun:"table:vms"`

	ID               string         `bun:"id,pk"`
	Name             string         `bun:"name"`
	Image            string         `bun:"image"`
	State            string         `bun:"state"`
	VCPUs            int            `bun:"vcpus"`
	MemoryMiB        int            `bun:"memory_mib"`
	Kernel           string         `bun:"kernel"`
	Initrd           string         `bun:"initrd"`
	Rootfs           string         `bun:"rootfs"`
	BootArgs         string         `bun:"boot_args"`
	MAC              string         `bun:"mac"`
	GuestIP          sql.NullString `bun:"guest_ip"`
	GuestIPSource    sql.NullString `bun:"guest_ip_source"`
	GuestIPUpdatedAt sql.NullTime   `bun:"guest_ip_updated_at"`
	RegisteredIP     string         `bun:"registered_ip"`
	RegisteredSource string         `bun:"registered_ip_source"`
	RegisteredAt     sql.NullTime   `bun:"registered_ip_at"`
	Provisioned      bool           `bun:"provisioned"`
	AgentToken       string         `bun:"agent_token"`
	SeedSealed       string         `bun:"seed_sealed"`
	HostKey          string         `bun:"host_key"`
	HostKeySource    string         `bun:"host_key_source"`
	Hypervisor       string         `bun:"hypervisor"`
	PID              int            `bun:"pid"`
	PIDIdentity      string         `bun:"pid_identity"`
	RunningDriver    string         `bun:"running_driver"`
	StateReason      string         `bun:"state_reason"`
	Address          string         `bun:"address"`
	Node             string         `bun:"node"`
	CreatedAt        time.Time      `bun:"created_at"`
	UpdatedAt        time.Time      `bun:"updated_at"`
}

func (r *vmRow) toVM() *app.VM {
	vm := &app.VM{ID: r.ID, Name: r.Name, Image: r.Image, State: app.VMState(r.State), VCPUs: r.VCPUs,
		MemoryMiB: r.MemoryMiB, Kernel: r.Kernel, Initrd: r.Initrd, Rootfs: r.Rootfs,
		BootArgs: r.BootArgs, MAC: r.MAC, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		Provisioned: r.Provisioned, AgentToken: r.AgentToken, SeedSecrets: r.SeedSealed, HostKey: r.HostKey, HostKeySource: r.HostKeySource,
		Hypervisor: r.Hypervisor, PID: r.PID, PIDIdentity: r.PIDIdentity, RunningDriver: r.RunningDriver, StateReason: r.StateReason, Address: r.Address, Node: r.Node}
	if r.GuestIP.Valid {
		vm.GuestIP = r.GuestIP.String
		vm.GuestIPSource = app.GuestIPSource(r.GuestIPSource.String)
		vm.GuestIPUpdatedAt = r.GuestIPUpdatedAt.Time.UTC()
	}
	if r.RegisteredIP != "" {
		vm.RegisteredIP = r.RegisteredIP
		vm.RegisteredIPSource = app.GuestIPSource(r.RegisteredSource)
		vm.RegisteredIPAt = r.RegisteredAt.Time.UTC()
	}
	return vm
}

func fromVM(vm *app.VM) *vmRow {
	r := &vmRow{ID: vm.ID, Name: vm.Name, Image: vm.Image, State: string(vm.State), VCPUs: vm.VCPUs,
		MemoryMiB: vm.MemoryMiB, Kernel: vm.Kernel, Initrd: vm.Initrd, Rootfs: vm.Rootfs,
		BootArgs: vm.BootArgs, MAC: vm.MAC, CreatedAt: vm.CreatedAt, UpdatedAt: vm.UpdatedAt,
		Provisioned: vm.Provisioned, AgentToken: vm.AgentToken, SeedSealed: vm.SeedSecrets, HostKey: vm.HostKey, HostKeySource: vm.HostKeySource,
		Hypervisor: vm.Hypervisor, PID: vm.PID, PIDIdentity: vm.PIDIdentity, RunningDriver: vm.RunningDriver, StateReason: vm.StateReason, Address: vm.Address, Node: vm.Node}
	if vm.GuestIP != "" {
		r.GuestIP = sql.NullString{String: vm.GuestIP, Valid: true}
		r.GuestIPSource = sql.NullString{String: string(vm.GuestIPSource), Valid: true}
		r.GuestIPUpdatedAt = sql.NullTime{Time: vm.GuestIPUpdatedAt, Valid: true}
	}
	if vm.RegisteredIP != "" {
		r.RegisteredIP, r.RegisteredSource = vm.RegisteredIP, string(vm.RegisteredIPSource)
		r.RegisteredAt = sql.NullTime{Time: vm.RegisteredIPAt, Valid: true}
	}
	return r
}

// CreateVM inserts vm with the hash of its registration token, and e in the audit log, at
// once. It stamps vm's times. A taken name is ECONFLICT.
func (db *DB) CreateVM(ctx context.Context, vm *app.VM, regTokenHash string, e *app.AuditEntry) error {
	vm.CreatedAt = now()
	vm.UpdatedAt = vm.CreatedAt
	return db.inTx(ctx, func(tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(fromVM(vm)).Exec(ctx); err != nil {
			if isUnique(err) {
				if taken, _ := tx.NewSelect().Model((*vmRow)(nil)).Where("name = ?", vm.Name).Exists(ctx); !taken && vm.Address != "" {
					return app.Errorf(app.ECONFLICT, "address %s was just taken by another VM; try again", vm.Address)
				}
				return app.Errorf(app.ECONFLICT, "a VM named %q already exists", vm.Name)
			}
			return fmt.Errorf("store: insert vm: %w", err)
		}
		tok := registrationTokenRow{VMID: vm.ID, Hash: regTokenHash, CreatedAt: vm.CreatedAt}
		if _, err := tx.NewInsert().Model(&tok).Exec(ctx); err != nil {
			return fmt.Errorf("store: insert registration token: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// SetSeedSecrets records the VM's sealed seed secrets (a seed of before they were sealed,
// adopted).
func (db *DB) SetSeedSecrets(ctx context.Context, id, sealed string) error {
	res, err := db.bun.NewUpdate().Model((*vmRow)(nil)).Set("seed_sealed = ?", sealed).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return db.full(fmt.Errorf("store: set seed secrets: %w", err))
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return app.Errorf(app.ENOTFOUND, "VM not found")
	}
	return nil
}

// VM returns the VM with the given id, or ENOTFOUND.
func (db *DB) VM(ctx context.Context, id string) (*app.VM, error) {
	var r vmRow
	if err := db.bun.NewSelect().Model(&r).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, notFound(err, "VM")
	}
	return r.toVM(), nil
}

// VMs returns every VM, by name.
func (db *DB) VMs(ctx context.Context) ([]*app.VM, error) {
	var rows []vmRow
	if err := db.bun.NewSelect().Model(&rows).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: list vms: %w", err)
	}
	vms := make([]*app.VM, len(rows))
	for i := range rows {
		vms[i] = rows[i].toVM()
	}
	return vms, nil
}

// UpdateVM writes vm's definition (name, sizes, images, boot args) and e, at once, if the
// VM's updated_at still equals vm.UpdatedAt: a concurrent change in between is ECONFLICT
// rather than silently overwritten.
func (db *DB) UpdateVM(ctx context.Context, vm *app.VM, e *app.AuditEntry) error {
	return db.UpdateVMWithToken(ctx, vm, "", e)
}

// UpdateVMWithToken is UpdateVM that also replaces the VM's registration token hash (when
// tokenHash is not ""), in the same transaction: a provisioned VM's rename goes with the
// new token baked into its re-rendered seed.
func (db *DB) UpdateVMWithToken(ctx context.Context, vm *app.VM, tokenHash string, e *app.AuditEntry) error {
	seen := vm.UpdatedAt
	return db.inTx(ctx, func(tx bun.Tx) error {
		t := now()
		res, err := tx.NewUpdate().Model((*vmRow)(nil)).
			Set("name = ?", vm.Name).Set("image = ?", vm.Image).Set("vcpus = ?", vm.VCPUs).Set("memory_mib = ?", vm.MemoryMiB).
			Set("kernel = ?", vm.Kernel).Set("initrd = ?", vm.Initrd).Set("rootfs = ?", vm.Rootfs).
			Set("boot_args = ?", vm.BootArgs).Set("hypervisor = ?", vm.Hypervisor).Set("seed_sealed = ?", vm.SeedSecrets).Set("updated_at = ?", t).
			Where("id = ?", vm.ID).Where("updated_at = ?", seen).Exec(ctx)
		if err != nil {
			if isUnique(err) {
				return app.Errorf(app.ECONFLICT, "a VM named %q already exists", vm.Name)
			}
			return fmt.Errorf("store: update vm: %w", err)
		}
		if err := oneRow(ctx, tx, res, vm.ID); err != nil {
			return err
		}
		if tokenHash != "" {
			if _, err := tx.NewUpdate().Model((*registrationTokenRow)(nil)).Set("hash = ?", tokenHash).
				Set("created_at = ?", t).Where("vm_id = ?", vm.ID).Exec(ctx); err != nil {
				return fmt.Errorf("store: replace registration token: %w", err)
			}
		}
		vm.UpdatedAt = t
		return audit(ctx, tx, e)
	})
}

// oneRow checks that an update by id touched a row; when it did not, it tells whether the
// VM is gone (ENOTFOUND) or changed underneath (ECONFLICT).
func oneRow(ctx context.Context, tx bun.Tx, res sql.Result, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: rows affected: %w", err)
	}
	if n == 1 {
		return nil
	}
	exists, err := tx.NewSelect().Model((*vmRow)(nil)).Where("id = ?", id).Exists(ctx)
	if err != nil {
		return fmt.Errorf("store: check vm: %w", err)
	}
	if !exists {
		return app.Errorf(app.ENOTFOUND, "VM not found")
	}
	return app.Errorf(app.ECONFLICT, "the VM was changed by someone else; reload and try again")
}

// SetGuestIP sets (ip != "") or clears (ip == "") the VM's guest IP as source, now: it
// applies the change (app.GuestIPState.Apply has the rule) and writes e,
// with the rule's note appended, at once. It reads the VM and writes it back only if no
// one changed it in between, as UpdateVM does; a concurrent change makes it start over
// (a guest's registration must not fail because an operator edited the VM meanwhile).
func (db *DB) SetGuestIP(ctx context.Context, id, ip string, source app.GuestIPSource, e *app.AuditEntry) (*app.VM, error) {
	detail := ""
	if e != nil {
		detail = e.Detail
	}
	for attempt := 0; ; attempt++ {
		var out *app.VM
		err := db.inTx(ctx, func(tx bun.Tx) error {
			var r vmRow
			if err := tx.NewSelect().Model(&r).Where("id = ?", id).Scan(ctx); errors.Is(err, sql.ErrNoRows) {
				return app.Errorf(app.ENOTFOUND, "VM not found")
			} else if err != nil {
				return fmt.Errorf("store: read vm: %w", err)
			}
			vm := r.toVM()
			t := now()
			next, note := vm.GuestIPState().Apply(app.GuestIPChange{IP: ip, Source: source, At: t})
			vm.SetGuestIPState(next)
			w := fromVM(vm)
			res, err := tx.NewUpdate().Model((*vmRow)(nil)).
				Set("guest_ip = ?", w.GuestIP).Set("guest_ip_source = ?", w.GuestIPSource).Set("guest_ip_updated_at = ?", w.GuestIPUpdatedAt).
				Set("registered_ip = ?", w.RegisteredIP).Set("registered_ip_source = ?", w.RegisteredSource).Set("registered_ip_at = ?", w.RegisteredAt).
				Set("updated_at = ?", t).Where("id = ?", id).Where("updated_at = ?", r.UpdatedAt).Exec(ctx)
			if err != nil {
				return fmt.Errorf("store: set guest ip: %w", err)
			}
			if err := oneRow(ctx, tx, res, id); err != nil {
				return err
			}
			if e != nil {
				e.Detail = detail + note
			}
			if err := audit(ctx, tx, e); err != nil {
				return err
			}
			vm.UpdatedAt = t
			out = vm
			return nil
		})
		if app.ErrorCode(err) == app.ECONFLICT && attempt < 3 {
			continue
		}
		return out, err
	}
}

// DeleteVM removes the VM (its registration token goes with it) and writes e, at once.
func (db *DB) DeleteVM(ctx context.Context, id string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*vmRow)(nil)).Where("id = ?", id).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: delete vm: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return app.Errorf(app.ENOTFOUND, "VM not found")
		}
		return audit(ctx, tx, e)
	})
}

// SetVMState records the VM's lifecycle state.
func (db *DB) SetVMState(ctx context.Context, id string, state app.VMState, e *app.AuditEntry) error {
	return db.SetRun(ctx, id, Run{State: state, Keep: true}, e)
}

// Run is a lifecycle change: the new state and, unless Keep, the process and reason.
type Run struct {
	State    app.VMState
	PID      int
	Identity string // the process's identity beyond its pid (hypervisor.IdentityOf)
	Driver   string
	Reason   string
	Keep     bool // leave pid, driver and reason as they are
	// From, when set, makes the change only if the VM is in one of these states now
	// (ECONFLICT otherwise): two operators cannot both start one VM.
	From []app.VMState
}

// SetRun records a lifecycle change and e, at once.
func (db *DB) SetRun(ctx context.Context, id string, r Run, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		q := tx.NewUpdate().Model((*vmRow)(nil)).Set("state = ?", string(r.State)).Set("updated_at = ?", now()).Where("id = ?", id)
		if !r.Keep {
			q = q.Set("pid = ?", r.PID).Set("pid_identity = ?", r.Identity).Set("running_driver = ?", r.Driver).Set("state_reason = ?", r.Reason)
		}
		if len(r.From) > 0 {
			from := make([]string, len(r.From))
			for i, s := range r.From {
				from[i] = string(s)
			}
			q = q.Where("state IN (?)", bun.In(from))
		}
		res, err := q.Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: set vm state: %w", err)
		}
		if err := oneRow(ctx, tx, res, id); err != nil {
			if app.ErrorCode(err) == app.ECONFLICT {
				return app.Errorf(app.ECONFLICT, "the VM changed state meanwhile; reload and try again")
			}
			return err
		}
		return audit(ctx, tx, e)
	})
}

// SetHostKey records the guest's SSH host key (trust on first use by the installer).
func (db *DB) SetHostKey(ctx context.Context, id, key, source string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*vmRow)(nil)).Set("host_key = ?", key).Set("host_key_source = ?", source).
			Set("updated_at = ?", now()).Where("id = ?", id).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: set host key: %w", err)
		}
		if err := oneRow(ctx, tx, res, id); err != nil {
			return err
		}
		return audit(ctx, tx, e)
	})
}
