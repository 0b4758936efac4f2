package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/store"
)

// The documents --json prints. Their field names are a contract with the
// scripts that read them: docs/cli.md lists every field, a test checks
// that the list and these types agree, and fields are added, never renamed
// or removed. Times are RFC 3339 in UTC; null means "none" (no expiry).

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print a JSON document (docs/cli.md) instead of text"}

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonTime is t for a JSON document: nil for the zero time.
func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// listJSON is keyward list --json.
type listJSON struct {
	Secrets []listSecretJSON `json:"secrets"`
	// Unnamed are the damaged files that name no secret.
	Unnamed []string `json:"unnamed"`
}

type listSecretJSON struct {
	Name     string            `json:"name"`
	Versions []listVersionJSON `json:"versions"`
}

type listVersionJSON struct {
	Version uint32  `json:"version"`
	State   string  `json:"state"`
	Current bool    `json:"current"`
	Created *string `json:"created"`
	Expires *string `json:"expires"`
	Until   *string `json:"until"`
	Damaged *string `json:"damaged"`
	// Agent is what a running agent reports of the current version when
	// it does not serve it: null when it does, or no agent answers.
	Agent *agentProblemJSON `json:"agent"`

	state store.State
}

// jsonStates names each state with one word.
var jsonStates = map[store.State]string{
	store.StateCurrent: "current", store.StateExpiresSoon: "expires_soon", store.StateGrace: "grace",
	store.StateRetired: "retired", store.StateExpired: "expired", store.StateDamaged: "damaged",
}

type agentProblemJSON struct {
	State   string `json:"state"`
	Serving uint32 `json:"serving"`
	Newest  uint32 `json:"newest"`
}

// inspectJSON is keyward inspect --json.
type inspectJSON struct {
	File       string          `json:"file"`
	Format     int             `json:"format"`
	Name       string          `json:"name"`
	Version    uint32          `json:"version"`
	Created    *string         `json:"created"`
	Expires    *string         `json:"expires"`
	Backend    string          `json:"backend"`
	KeyID      string          `json:"key_id"`
	Host       string          `json:"host"`
	ThisHost   bool            `json:"this_host"`
	WrappedKey int             `json:"wrapped_key_bytes"`
	Ciphertext int             `json:"ciphertext_bytes"`
	Value      int             `json:"value_bytes"`
	Credential *credentialJSON `json:"credential"`
}

type credentialJSON struct {
	Exchange string `json:"exchange"`
	KeyID    string `json:"key_id"`
	KeyType  string `json:"key_type"`
}

// statusJSON is keyward status --json.
type statusJSON struct {
	Agent         string        `json:"agent"`
	Socket        string        `json:"socket"`
	Health        string        `json:"health"`
	Backend       backendJSON   `json:"backend"`
	Secrets       int           `json:"secrets"`
	UptimeSeconds int64         `json:"uptime_seconds"`
	Problems      []problemJSON `json:"problems"`
	// Expiring is null when the store's metadata cannot be read.
	Expiring *expiringJSON `json:"expiring"`
}

type backendJSON struct {
	Name    string  `json:"name"`
	Healthy bool    `json:"healthy"`
	Since   *string `json:"since"`
	LastOK  *string `json:"last_ok"`
}

type problemJSON struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Serving uint32 `json:"serving"`
	Newest  uint32 `json:"newest"`
}

type expiringJSON struct {
	WindowSeconds int64             `json:"window_seconds"`
	Versions      []expiryEntryJSON `json:"versions"`
}

type expiryEntryJSON struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"`
	At      string `json:"at"`
}

// policyCheckJSON is keyward policy check --json.
type policyCheckJSON struct {
	Decision string     `json:"decision"`
	Rule     string     `json:"rule"`
	Reason   string     `json:"reason"`
	Op       string     `json:"op"`
	Secret   string     `json:"secret"`
	Caller   callerJSON `json:"caller"`
	Rules    []string   `json:"rules"`
	Warnings []string   `json:"warnings"`
}

type callerJSON struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
	Exe    string   `json:"exe"`
	Unit   string   `json:"unit"`
}

// pcrsJSON is keyward pcrs --json.
type pcrsJSON struct {
	Selection string       `json:"selection"`
	PCRs      []pcrJSON    `json:"pcrs"`
	Keys      []sealedJSON `json:"keys"`
	// Legacy is true for a store that seals each data key on its own.
	Legacy bool `json:"legacy"`
}

type pcrJSON struct {
	Index int    `json:"index"`
	Value string `json:"value"`
}

type sealedJSON struct {
	// Name and Version are "" and 0 for the store key.
	Name      string  `json:"name"`
	Version   uint32  `json:"version"`
	SealedTo  *string `json:"sealed_to"`
	Satisfied bool    `json:"satisfied"`
	Changed   []int   `json:"changed"`
	Error     *string `json:"error"`
}
