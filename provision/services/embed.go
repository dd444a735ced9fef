// Package services holds the guest agent's service definitions, embedded so the
// provisioner (cloud-init user-data, the SSH installer) can install them: an OpenRC script
// for Alpine-style guests and a systemd unit for the rest.
package services

import _ "embed"

// OpenRC is /etc/init.d/hearth-agent.
//
//go:embed hearth-agent.openrc
var OpenRC []byte

// Systemd is /etc/systemd/system/hearth-agent.service.
//
//go:embed hearth-agent.service
var Systemd []byte
