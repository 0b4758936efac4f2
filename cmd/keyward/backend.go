package main

import (
	"context"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/backend"
)

// pinStdinFlag lets the backend's PIN come from standard input, for a
// first keyward init run by a script without a terminal:
// systemd-creds decrypt … - | keyward --pin-stdin init.
var pinStdinFlag = &cli.BoolFlag{
	Name:  "pin-stdin",
	Usage: "read the backend's PIN from standard input when no credential or PIN file holds it",
}

// backendOptions are the options of every command that opens the backend.
func backendOptions(c *cli.Context) backend.Options {
	var opts backend.Options
	if c.Bool(pinStdinFlag.Name) {
		opts.PINStdin = c.App.Reader
	}
	return opts
}

// openBackend opens the configured backend; with create (keyward init) it
// makes what is missing.
func openBackend(c *cli.Context, cfg config.Config, create bool) (backend.Backend, bool, error) {
	opts := backendOptions(c)
	opts.Create = create
	return backend.Open(c.Context, cfg, opts)
}

// openStoreNoBackend opens the store without a backend: for operations on
// metadata and files (list, inspect, rm) that decrypt nothing.
func openStoreNoBackend(cfg config.Config) (*store.Store, error) {
	host, err := store.ReadHostID(cfg.Store.MachineIDFile)
	if err != nil {
		return nil, err
	}
	return store.New(store.Config{Dir: filepath.Clean(cfg.Store.Dir), Host: host})
}

// openStore opens the store with its backend. The caller closes the backend.
func openStore(c *cli.Context, cfg config.Config) (*store.Store, backend.Backend, error) {
	return openStoreWith(c.Context, cfg, backendOptions(c))
}

func openStoreWith(ctx context.Context, cfg config.Config, opts backend.Options) (*store.Store, backend.Backend, error) {
	host, err := store.ReadHostID(cfg.Store.MachineIDFile)
	if err != nil {
		return nil, nil, err
	}
	fleet, err := loadFleetKit(cfg)
	if err != nil {
		return nil, nil, err
	}
	b, _, err := backend.Open(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	s, err := store.New(store.Config{Dir: cfg.Store.Dir, Backend: b, Host: host, FleetKit: fleet})
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return s, b, nil
}
