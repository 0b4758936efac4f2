package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Nonce marks let a signer issue nonces that grow across restarts for an
// exchange that refuses a nonce not above the last one it saw (Kraken).
// The signer records a mark above every nonce it may issue before it
// issues them; after a restart it starts at the mark. Marks live in the
// store's nonces directory, one file per API key, written only by the
// agent.

// noncesDir is the directory of nonce marks, inside the store.
const noncesDir = "nonces"

// nonceMagic begins a nonce mark file.
const nonceMagic = "keyward-nonce-mark 1\n"

// NonceMark returns the mark recorded for key (an exchange and an API key
// id): every nonce issued for key so far is below it. It is 0 when none
// was recorded. A damaged mark file is an error: nonces must not start
// over.
func (s *Store) NonceMark(key string) (uint64, error) {
	name := nonceFile(key)
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, noncesDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("failed to read the nonce mark of %s: %w", key, err)
	}
	rest, ok := strings.CutPrefix(string(b), nonceMagic)
	keyLine, markLine, ok2 := strings.Cut(rest, "\n")
	mark, err := strconv.ParseUint(strings.TrimSuffix(markLine, "\n"), 10, 64)
	if !ok || !ok2 || keyLine != key || err != nil || !strings.HasSuffix(markLine, "\n") {
		return 0, fmt.Errorf("the nonce mark of %s (%s) is damaged: nonces cannot safely start over; "+
			"write a mark above the last nonce the exchange saw, as docs/signing.md says", key, filepath.Join(s.cfg.Dir, noncesDir, name))
	}
	return mark, nil
}

// SetNonceMark records mark for key, durably: when it returns, a restart
// starts at mark or above. Marks only grow: a mark below the recorded
// one is an error.
func (s *Store) SetNonceMark(key string, mark uint64) error {
	dir := filepath.Join(s.cfg.Dir, noncesDir)
	if err := os.Mkdir(dir, 0o700); err == nil {
		if err := syncDir(s.cfg.Dir); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("failed to create the nonce marks directory: %w", err)
	}
	if old, err := s.NonceMark(key); err != nil {
		return err
	} else if mark < old {
		return fmt.Errorf("nonce mark %d for %s is below the recorded %d", mark, key, old)
	}
	b := []byte(nonceMagic + key + "\n" + strconv.FormatUint(mark, 10) + "\n")
	if err := writeReplace(dir, nonceFile(key), b); err != nil {
		return fmt.Errorf("failed to record the nonce mark of %s: %w", key, err)
	}
	return nil
}

// nonceFile names key's mark file by a hash: an API key id may hold any
// printable character.
func nonceFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}
