package main

import (
	"context"

	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
)

// openBackend opens the configured backend; with create, it also creates
// the root key if it does not exist yet and reports whether it did.
func openBackend(_ context.Context, cfg config.Config, create bool) (b *hsm.Token, created bool, err error) {
	uri, err := hsm.ParseURI(cfg.PKCS11.URI)
	if err != nil {
		return nil, false, err
	}
	pin, err := hsm.ReadPIN(hsm.PINSource{Credential: cfg.PKCS11.PINCredential, URI: uri, File: cfg.PKCS11.PINFile})
	if err != nil {
		return nil, false, err
	}
	defer clear(pin)
	hc := hsm.Config{URI: uri, PIN: pin, MaxSessions: cfg.PKCS11.MaxSessions}
	if create {
		return hsm.Init(hc)
	}
	b, err = hsm.Open(hc)
	return b, false, err
}

// backend is what the CLI needs of a root-key backend: the store's
// contract and a health check for the agent's status and watchdog.
type backend interface {
	store.Backend
	Healthy(ctx context.Context) error
}

var _ backend = (*hsm.Token)(nil)
