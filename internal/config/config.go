// Package config reads keyward's configuration file, a TOML file (default
// /etc/keyward/keyward.toml) in which every setting has a default. The
// settings are documented in docs/configuration.md.
//
// Decoding is strict: an unknown key is an error, so a typo cannot silently
// leave a setting at its default.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/keyward/keyward/internal/trust"
)

// DefaultPath is where keyward looks for its configuration file.
const DefaultPath = "/etc/keyward/keyward.toml"

// MaxFileSize bounds the configuration file.
const MaxFileSize = 1 << 20

// The root-key backends, the values of Config.Backend.
const (
	BackendPKCS11 = "pkcs11"  // an HSM key
	BackendTPM    = "tpm"     // a TPM store key sealed to the PCR policy
	BackendHSMTPM = "hsm+tpm" // an HSM key whose PIN the TPM keeps sealed
)

// Config is the whole configuration. The zero value is not useful: start
// from [Default] or [Load].
type Config struct {
	// Backend selects the root-key backend: "pkcs11" (an HSM), "tpm", or
	// "hsm+tpm" (an HSM whose PIN is sealed by the TPM to its PCR policy).
	Backend  string   `toml:"backend"`
	Store    Store    `toml:"store"`
	PKCS11   PKCS11   `toml:"pkcs11"`
	TPM      TPM      `toml:"tpm"`
	Agent    Agent    `toml:"agent"`
	Recovery Recovery `toml:"recovery"`
	Fleet    Fleet    `toml:"fleet"`
}

// Recovery configures the break-glass recovery kits (docs/recovery.md).
type Recovery struct {
	// FleetKit, when set, names the public file of the fleet recovery
	// kit (keyward recovery init --fleet): every data key is also sealed
	// to it.
	FleetKit string `toml:"fleet_kit"`
}

// Fleet configures provisioning from a workstation (docs/fleet.md): which
// provisioners this host takes bundles from, and where they arrive.
type Fleet struct {
	// Provisioners are the public keys whose bundles the host imports,
	// as keyward provisioner prints them ("ed25519:BASE64",
	// "ecdsa-p256:BASE64"). Empty: none.
	Provisioners []string `toml:"provisioners"`
	// Inbox is the directory the agent imports bundles from at start and
	// at each reload; empty: none.
	Inbox string `toml:"inbox"`
}

// TPM configures the TPM 2.0 backend.
type TPM struct {
	// Device is the TPM character device, or the Unix socket of a swtpm.
	Device string `toml:"device"`
	// PCRs is the PCR selection data keys are sealed to, e.g. "7",
	// "0,2,7" or "sha256:7+11".
	PCRs string `toml:"pcrs"`
	// PINFile, if set, names a file holding a PIN that sealed objects
	// also require (policy auth value).
	PINFile string `toml:"pin_file"`
	// PersistentSRK is the handle of a persistent storage key to use
	// instead of re-creating the standard one; 0 means none.
	PersistentSRK uint32 `toml:"persistent_srk"`
	// SealedHSMPIN is where the hsm+tpm backend keeps the HSM PIN sealed
	// by the TPM; relative paths are inside the store directory.
	SealedHSMPIN string `toml:"sealed_hsm_pin"`
}

// Agent configures the daemon started by `keyward serve`.
type Agent struct {
	// Socket is the Unix socket path the agent listens on, unless systemd
	// passes a listening socket.
	Socket string `toml:"socket"`
	// SocketMode is the socket's permission bits, octal.
	SocketMode string `toml:"socket_mode"`
	// SocketGroup, when set, owns the socket and its directory: the
	// group trading processes run in.
	SocketGroup string `toml:"socket_group"`
	// Policy is the policy file.
	Policy string `toml:"policy"`
	// AuditLog is where audit events go: "stderr" or a file path.
	AuditLog string `toml:"audit_log"`
	// LogLevel is the operational log level: debug, info, warn, error.
	LogLevel string `toml:"log_level"`
	// MaxConnections bounds open client connections.
	MaxConnections int `toml:"max_connections"`
	// FrameTimeout bounds how long a client may take to finish a frame.
	FrameTimeout Duration `toml:"frame_timeout"`
	// IdleTimeout closes connections idle for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MetricsAddress, when set, is the host:port the agent serves
	// Prometheus metrics on, unless systemd passes keyward-metrics.socket.
	MetricsAddress string `toml:"metrics_address"`
}

// A Duration is a time.Duration written as a string such as "2s", "10m"
// or, as on the command line, "30d".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ParseDuration reads a duration as keyward writes them, in the
// configuration and on the command line: Go's syntax (90m, 24h, 1h30m)
// plus whole days (30d). It must not be negative.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 24h, 90m or 7d", s)
	}
	return d, nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Mode returns SocketMode as permission bits.
func (a *Agent) Mode() (os.FileMode, error) {
	m, err := strconv.ParseUint(a.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("agent.socket_mode %q is not an octal mode such as \"0660\"", a.SocketMode)
	}
	return os.FileMode(m), nil
}

// Store configures the envelope store.
type Store struct {
	// Dir is the store directory.
	Dir string `toml:"dir"`
	// MachineIDFile is the machine-id file envelopes are bound to.
	MachineIDFile string `toml:"machine_id_file"`
	// Grace is how long the previous version of a rotated secret stays
	// servable, unless rotate --grace says otherwise.
	Grace Duration `toml:"grace"`
	// ExpiryWarning is how far ahead list and status flag secrets that
	// will expire.
	ExpiryWarning Duration `toml:"expiry_warning"`
}

// PKCS11 configures the PKCS#11 backend.
type PKCS11 struct {
	// URI names the module, token and key (RFC 7512).
	URI string `toml:"uri"`
	// PINFile is a file holding the user PIN (mode 0600 or stricter).
	PINFile string `toml:"pin_file"`
	// PINCredential is the name of the systemd credential holding the PIN,
	// read from $CREDENTIALS_DIRECTORY when that is set.
	PINCredential string `toml:"pin_credential"`
	// MaxSessions bounds the PKCS#11 session pool.
	MaxSessions int `toml:"max_sessions"`
}

// Default returns the configuration used when no file exists.
func Default() Config {
	return Config{
		Backend: BackendPKCS11,
		Store: Store{
			Dir:           "/var/lib/keyward",
			MachineIDFile: "/etc/machine-id",
			Grace:         Duration{24 * time.Hour},
			ExpiryWarning: Duration{7 * 24 * time.Hour},
		},
		PKCS11: PKCS11{
			URI:           "pkcs11:token=keyward;object=keyward-kek?module-path=/usr/lib/softhsm/libsofthsm2.so",
			PINCredential: "keyward-pin",
			MaxSessions:   8,
		},
		TPM: TPM{
			Device:       "/dev/tpmrm0",
			PCRs:         "sha256:7",
			SealedHSMPIN: "hsm-pin.tpm",
		},
		Agent: Agent{
			Socket:         "/run/keyward/agent.sock",
			SocketMode:     "0660",
			Policy:         "/etc/keyward/policy.toml",
			AuditLog:       "stderr",
			LogLevel:       "info",
			MaxConnections: 1024,
			FrameTimeout:   Duration{2 * time.Second},
			IdleTimeout:    Duration{10 * time.Minute},
		},
	}
}

// Load reads the file at path over the defaults. If required is false and
// the file does not exist, Load returns the defaults.
func Load(path string, required bool) (Config, error) {
	cfg := Default()
	// Whoever can change the configuration can make keyward load their
	// PKCS #11 module or read their PIN: it must be as trusted as keyward.
	b, err := trust.ReadFile("configuration", path, trust.Public, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	if err := Parse(b, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes TOML b over cfg and validates the result.
func Parse(b []byte, cfg *Config) error {
	md, err := toml.Decode(string(b), cfg)
	if err != nil {
		return err
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = strconv.Quote(k.String())
		}
		return fmt.Errorf("unknown setting %s (see docs/configuration.md)", strings.Join(keys, ", "))
	}
	return cfg.Validate()
}

// Validate checks settings that have a fixed set of values or a range.
func (c *Config) Validate() error {
	switch c.Backend {
	case BackendPKCS11, BackendHSMTPM, BackendTPM:
	default:
		return fmt.Errorf("backend %q is not known; use \"pkcs11\", \"tpm\" or \"hsm+tpm\"", c.Backend)
	}
	if c.Backend != BackendTPM && c.PKCS11.URI == "" {
		return errors.New("pkcs11.uri is empty")
	}
	if c.Backend != BackendPKCS11 {
		if c.TPM.Device == "" || c.TPM.PCRs == "" {
			return errors.New("tpm.device and tpm.pcrs must be set for the tpm and hsm+tpm backends")
		}
		if c.Backend == BackendHSMTPM && c.TPM.SealedHSMPIN == "" {
			return errors.New("tpm.sealed_hsm_pin is empty")
		}
	}
	if c.Store.Dir == "" {
		return errors.New("store.dir is empty")
	}
	if c.Store.MachineIDFile == "" {
		return errors.New("store.machine_id_file is empty")
	}
	if c.Store.Grace.Duration < 0 || c.Store.ExpiryWarning.Duration < 0 {
		return errors.New("store.grace and store.expiry_warning must not be negative")
	}
	if c.PKCS11.MaxSessions < 1 || c.PKCS11.MaxSessions > 256 {
		return fmt.Errorf("pkcs11.max_sessions is %d; use 1 to 256", c.PKCS11.MaxSessions)
	}
	a := &c.Agent
	if !filepath.IsAbs(a.Socket) {
		return fmt.Errorf("agent.socket %q is not an absolute path", a.Socket)
	}
	if m, err := a.Mode(); err != nil {
		return err
	} else if m&0o007 != 0 {
		return fmt.Errorf("agent.socket_mode %s lets every user on the host connect; use 0660 with socket_group, or 0600", a.SocketMode)
	}
	if a.Policy == "" {
		return errors.New("agent.policy is empty")
	}
	if a.AuditLog == "" {
		return errors.New("agent.audit_log is empty; use \"stderr\" or a file path")
	}
	switch a.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("agent.log_level %q is not one of debug, info, warn, error", a.LogLevel)
	}
	if a.MaxConnections < 1 || a.MaxConnections > 1<<20 {
		return fmt.Errorf("agent.max_connections is %d; use 1 to 1048576", a.MaxConnections)
	}
	if a.FrameTimeout.Duration <= 0 || a.IdleTimeout.Duration <= 0 {
		return errors.New("agent.frame_timeout and agent.idle_timeout must be positive")
	}
	if a.MetricsAddress != "" {
		host, port, err := net.SplitHostPort(a.MetricsAddress)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 || host == "" {
			return fmt.Errorf("agent.metrics_address %q is not an address and port such as \"127.0.0.1:9464\"", a.MetricsAddress)
		}
	}
	if k := c.Recovery.FleetKit; k != "" && !filepath.IsAbs(k) {
		return fmt.Errorf("recovery.fleet_kit %q is not an absolute path", k)
	}
	if c.Fleet.Inbox != "" && !filepath.IsAbs(c.Fleet.Inbox) {
		return fmt.Errorf("fleet.inbox %q is not an absolute path", c.Fleet.Inbox)
	}
	return nil
}
