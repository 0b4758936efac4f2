package recovery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"
)

// Shares for custodians who are not in the room: each share is encrypted
// with age (age-encryption.org/v1) to its custodian's public key, an age
// recipient or an SSH key, and written ASCII-armored. The custodian
// decrypts it with `age -d` and their own key, on their own machine, only
// when a restore needs it; the plaintext is the share's one line of text.
//
// At restore the share travels to the restoring host encrypted again, to
// a [RestoreKey] that exists only in the memory of the restore process, so
// that neither the custodian's key nor the share in clear ever reaches
// that host's disk or the channel between them.

// MaxRecipientFile bounds a custodian's public key file: an age
// post-quantum recipient is about 2,000 characters, an SSH RSA key under
// 1,000.
const MaxRecipientFile = 16 << 10

// A Recipient is a custodian's public key: an age X25519 recipient
// ("age1…"), an age hybrid post-quantum recipient ("age1pq1…"), or an SSH
// ed25519 or RSA (2048 bits or more) public key. It is safe for
// concurrent use.
type Recipient struct {
	r    age.Recipient
	desc string
}

// String describes the key without printing all of it: its kind and, for
// SSH keys, the SHA-256 fingerprint `ssh-keygen -l` shows.
func (r *Recipient) String() string { return r.desc }

// ParseRecipient reads a custodian's public key file: one key on one line,
// as age-keygen prints it or as in authorized_keys or id_ed25519.pub;
// blank lines and lines starting with # are ignored. Errors never quote
// the file, which may hold a private key given by mistake.
func ParseRecipient(b []byte) (*Recipient, error) {
	if len(b) > MaxRecipientFile {
		return nil, fmt.Errorf("recovery: %d bytes is larger than a public key file (%d bytes at most)", len(b), MaxRecipientFile)
	}
	if bytes.Contains(b, []byte("AGE-SECRET-KEY-")) || bytes.Contains(b, []byte("PRIVATE KEY")) {
		return nil, errors.New("recovery: this is a private key: give the custodian's public key (age-keygen -y, or the .pub file of an SSH key), and treat the private key as exposed")
	}
	var line string
	for l := range strings.Lines(string(b)) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if line != "" {
			return nil, errors.New("recovery: more than one key in the file: give each custodian's key in a file of its own")
		}
		line = l
	}
	switch {
	case line == "":
		return nil, errors.New("recovery: no public key in the file")
	case strings.HasPrefix(line, "age1pq1"):
		r, err := age.ParseHybridRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("recovery: malformed age post-quantum recipient: %v", err)
		}
		return &Recipient{r: r, desc: "age post-quantum recipient " + abbreviate(line)}, nil
	case strings.HasPrefix(line, "age1"):
		r, err := age.ParseX25519Recipient(line)
		if err != nil {
			return nil, fmt.Errorf("recovery: malformed age recipient: %v", err)
		}
		return &Recipient{r: r, desc: "age recipient " + line}, nil
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, errors.New("recovery: not a public key: use an age recipient (age1…) or an SSH public key (ssh-ed25519 or ssh-rsa)")
	}
	var r age.Recipient
	switch pk.Type() {
	case ssh.KeyAlgoED25519:
		r, err = agessh.NewEd25519Recipient(pk)
	case ssh.KeyAlgoRSA:
		r, err = agessh.NewRSARecipient(pk)
	default:
		return nil, fmt.Errorf("recovery: SSH %s keys cannot receive a share: use an ssh-ed25519 or ssh-rsa key, or an age recipient", pk.Type())
	}
	if err != nil {
		return nil, fmt.Errorf("recovery: SSH %s key: %v", pk.Type(), err)
	}
	return &Recipient{r: r, desc: pk.Type() + " " + ssh.FingerprintSHA256(pk)}, nil
}

// abbreviate shortens a long recipient for display.
func abbreviate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:24] + "…" + s[len(s)-12:]
}

// Encrypt returns the share's text encrypted to r, ASCII-armored: what a
// custodian receives instead of the share in clear.
func (s Share) Encrypt(r *Recipient) ([]byte, error) {
	if len(s.value) != seedSize {
		return nil, fmt.Errorf("%w: not a share made by NewKit or ParseShare", ErrBadShare)
	}
	text := []byte(s.String() + "\n")
	defer clear(text)
	var out bytes.Buffer
	aw := armor.NewWriter(&out)
	w, err := age.Encrypt(aw, r.r)
	if err != nil {
		return nil, fmt.Errorf("recovery: encrypting share %d to %s: %w", s.Index, r, err)
	}
	if _, err := w.Write(text); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// A RestoreKey is a one-time age key pair that a restore prints and
// custodians encrypt their shares to, so that shares reach the restoring
// host encrypted. It lives only in memory: once the process ends, what
// was encrypted to it cannot be opened. It offers a post-quantum hybrid
// recipient (age 1.3 and later) and an X25519 one (any age version).
type RestoreKey struct {
	pq *age.HybridIdentity
	x  *age.X25519Identity
}

// NewRestoreKey makes a restore key.
func NewRestoreKey() (*RestoreKey, error) {
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		return nil, fmt.Errorf("recovery: making a restore key: %w", err)
	}
	x, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("recovery: making a restore key: %w", err)
	}
	return &RestoreKey{pq: pq, x: x}, nil
}

// Recipient returns the post-quantum recipient (age1pq1…).
func (k *RestoreKey) Recipient() string { return k.pq.Recipient().String() }

// ClassicRecipient returns the X25519 recipient (age1…), for custodians
// whose age is older than 1.3.
func (k *RestoreKey) ClassicRecipient() string { return k.x.Recipient().String() }

// MaxSharesInput bounds what [ReadShares] reads: 16 shares, in clear or
// encrypted.
const MaxSharesInput = 2 * maxSharesText

// maxEncryptedShare bounds one armored age file in a restore's input: a
// share encrypted to a post-quantum recipient takes about 2.5 KiB, and
// the bound keeps the number of recipient stanzas tried small.
const maxEncryptedShare = 8 << 10

// Armor markers of an age file (age-encryption.org/v1, ASCII armor).
const (
	armorBegin = "-----BEGIN AGE ENCRYPTED FILE-----"
	armorEnd   = "-----END AGE ENCRYPTED FILE-----"
)

// ReadShares reads what custodians give a restore: shares in clear (see
// [ParseShares]) and shares encrypted to key and ASCII-armored
// (`age -a -r RECIPIENT`), in any order and mix. key may be nil when no
// share is encrypted. Like ParseShares it reports every bad share and
// returns none if any is bad; an encrypted share that does not open is
// named by its place among the encrypted ones ("encrypted share 2").
func ReadShares(text []byte, key *RestoreKey) ([]Share, error) {
	if len(text) > MaxSharesInput {
		return nil, badShare(0, "%d bytes of text is more than %d shares (%d bytes at most)", len(text), MaxShares, MaxSharesInput)
	}
	var (
		clearText strings.Builder
		errs      []error
		n         int
	)
	rest := string(text)
	for {
		before, block, found := strings.Cut(rest, armorBegin)
		clearText.WriteString(before)
		if !found {
			break
		}
		n++
		body, after, closed := strings.Cut(block, armorEnd)
		if !closed {
			errs = append(errs, badShare(0, "encrypted share %d: no %s line: it was cut short", n, armorEnd))
			break
		}
		rest = after
		if len(body) > maxEncryptedShare {
			errs = append(errs, badShare(0, "encrypted share %d: %d bytes is more than a share encrypted to one recipient (%d at most)",
				n, len(body), maxEncryptedShare))
			continue
		}
		plain, err := decryptShare(armorBegin+body+armorEnd+"\n", key)
		if err != nil {
			errs = append(errs, fmt.Errorf("encrypted share %d: %w", n, err))
			continue
		}
		clearText.WriteString("\n" + plain + "\n")
	}
	all := clearText.String()
	shares, err := ParseShares(all)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		DestroyShares(shares)
		return nil, errors.Join(errs...)
	}
	return shares, nil
}

// decryptShare opens one armored age file with key and returns its text.
func decryptShare(armored string, key *RestoreKey) (string, error) {
	if key == nil {
		return "", badShare(0, "it is encrypted, and this restore has no restore key")
	}
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(armored)), key.pq, key.x)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return "", badShare(0, "it is not encrypted to this restore's key (it is encrypted to %s): "+
			"the custodian decrypts their share with age -d and encrypts it to the restore key this restore printed",
			strings.Join(nm.StanzaTypes, ", "))
	}
	if err != nil {
		return "", badShare(0, "not a readable age file: %v", err)
	}
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(r), maxShareText*MaxShares+1))
	if err != nil {
		clear(b)
		return "", badShare(0, "it does not decrypt: %v", err)
	}
	if len(b) > maxShareText*MaxShares {
		clear(b)
		return "", badShare(0, "it holds more text than shares")
	}
	s := string(b)
	clear(b)
	return s, nil
}
