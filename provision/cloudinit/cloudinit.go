// Package cloudinit renders the NoCloud documents Hearth bakes into each VM's seed:
// user-data (#cloud-config), meta-data and, for a static address, network-config (v2).
// Guest-side logic lives in two small sh scripts (install, callback) shipped inside the
// user-data; they read everything they need from /etc/hearth-agent.conf, so secrets are
// written in exactly one place. The agent binary itself rides on the seed as a file:
// cloud-init's YAML parser takes minutes over a base64 binary under emulation.
package cloudinit

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"hearth/guest/api"
	"hearth/provision/services"
)

//go:embed templates
var templates embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	// q quotes a value as a YAML double-quoted scalar (JSON strings are valid YAML).
	"q": func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	},
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		for i, l := range lines {
			if l != "" {
				lines[i] = pad + l
			}
		}
		return strings.Join(lines, "\n")
	},
	"isIPv6": func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Is6() },
}).ParseFS(templates, "templates/*.tmpl"))

// Static is a fixed address for the guest's primary interface.
type Static struct {
	Address string   // CIDR, e.g. 10.0.0.5/24
	Gateway string   // optional
	DNS     []string // optional
}

// Params is everything that differs between VMs.
type Params struct {
	VMID, Hostname, MAC string
	// InstanceID is cloud-init's instance id; "" means the VM id. A new one makes the guest
	// apply the seed again at its next boot (after a rename).
	InstanceID        string
	ManagerURL        string // HEARTH_PUBLIC_URL, as guests reach it
	AgentToken        string // what the manager presents to the agent
	RegistrationToken string // what the guest presents to the manager
	ManagerSSHKey     string // authorized_keys line of the manager's key, for user hearth
	HostKeyPrivate    string // the guest's SSH host key (OpenSSH PEM), so the installer can pin it
	HostKeyPublic     string
	Static            *Static // nil: DHCP, no network-config
	Listen            string  // the agent's listen address; "" means every interface on api.DefaultPort
}

// Docs are the rendered documents.
type Docs struct {
	UserData, MetaData, NetworkConfig []byte // NetworkConfig nil without a static address
}

var (
	idRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_]{16,128}$`)
	macRE   = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
)

// check refuses values that could break out of the config file or the YAML: they come
// from our own generators, but a renderer should not trust its caller with a guest's boot.
func (p Params) check() error {
	switch {
	case !idRE.MatchString(p.VMID):
		return fmt.Errorf("cloudinit: VM id %q is not a safe identifier", p.VMID)
	case p.InstanceID != "" && !idRE.MatchString(p.InstanceID):
		return fmt.Errorf("cloudinit: instance id %q is not a safe identifier", p.InstanceID)
	case !idRE.MatchString(p.Hostname):
		return fmt.Errorf("cloudinit: hostname %q is not a DNS label", p.Hostname)
	case !tokenRE.MatchString(p.AgentToken) || !tokenRE.MatchString(p.RegistrationToken):
		return fmt.Errorf("cloudinit: tokens must be 16-128 letters, digits or _")
	case !strings.HasPrefix(p.ManagerURL, "http://") && !strings.HasPrefix(p.ManagerURL, "https://"),
		strings.ContainsAny(p.ManagerURL, " '\"$`\\\n"):
		return fmt.Errorf("cloudinit: manager URL %q must be a plain http(s) URL", p.ManagerURL)
	case p.Static != nil && !macRE.MatchString(p.MAC):
		return fmt.Errorf("cloudinit: a static address needs the VM's MAC, got %q", p.MAC)
	}
	if p.Static != nil {
		if _, err := netip.ParsePrefix(p.Static.Address); err != nil {
			return fmt.Errorf("cloudinit: static address %q: %w", p.Static.Address, err)
		}
		for _, a := range append([]string{p.Static.Gateway}, p.Static.DNS...) {
			if _, err := netip.ParseAddr(a); a != "" && err != nil {
				return fmt.Errorf("cloudinit: %q is not an IP address", a)
			}
		}
	}
	return nil
}

// AgentConf is /etc/hearth-agent.conf for the VM: KEY=value lines that both the agent and
// sh read the same way (every value is checked to need no quoting).
func (p Params) AgentConf() string {
	listen := p.Listen
	if listen == "" {
		listen = ":" + strconv.Itoa(api.DefaultPort)
	}
	return fmt.Sprintf("HEARTH_AGENT_LISTEN=%s\nHEARTH_AGENT_TOKEN=%s\nHEARTH_MANAGER_URL=%s\nHEARTH_VM_ID=%s\nHEARTH_REGISTRATION_TOKEN=%s\n",
		listen, p.AgentToken, p.ManagerURL, p.VMID, p.RegistrationToken)
}

//go:embed templates/install.sh
var installScript string

//go:embed templates/callback.sh
var callbackScript string

// Render renders the documents for one VM.
func Render(p Params) (Docs, error) {
	if err := p.check(); err != nil {
		return Docs{}, err
	}
	if p.InstanceID == "" {
		p.InstanceID = p.VMID
	}
	data := struct {
		Params
		AgentConf, InstallScript, CallbackScript, SystemdUnit, OpenRCScript string
	}{p, p.AgentConf(), installScript, callbackScript, string(services.Systemd), string(services.OpenRC)}
	var d Docs
	for name, dst := range map[string]*[]byte{"user-data.tmpl": &d.UserData, "meta-data.tmpl": &d.MetaData, "network-config.tmpl": &d.NetworkConfig} {
		if name == "network-config.tmpl" && p.Static == nil {
			continue
		}
		var b bytes.Buffer
		if err := tmpl.ExecuteTemplate(&b, name, data); err != nil {
			return Docs{}, fmt.Errorf("cloudinit: render %s: %w", name, err)
		}
		*dst = b.Bytes()
	}
	return d, nil
}
