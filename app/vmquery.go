package app

import "time"

// VMQuery selects a page of VMs. Sort is "name" (A→Z) or "created" (newest first); Desc
// reverses it. A page starts After a key (the API's cursor) or at Offset (the UI's pages).
type VMQuery struct {
	Name   string    // a part of the name, any case ("" matches every VM)
	States []VMState // any of these (none: every state)
	Not    []VMState // none of these
	Node   string    // only the VMs of this node ("": every node's)
	Sort   string
	Desc   bool
	After  *VMKey
	Offset int
	Limit  int // 0: no limit
}

// VMKey is where a page ended: the sort column's value of its last VM and that VM's id.
type VMKey struct {
	Name    string    `json:"n,omitempty"`
	Created time.Time `json:"c,omitempty"`
	ID      string    `json:"i"`
}

// KeyOf is the key of v under sort.
func KeyOf(v *VM, sort string) VMKey {
	if sort == "created" {
		return VMKey{Created: v.CreatedAt.UTC(), ID: v.ID}
	}
	return VMKey{Name: v.Name, ID: v.ID}
}
