package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// hashSlots bounds the password checks computed at once to about the
// number of CPUs: each argon2id check holds its memory cost (19 MiB by
// default) while it runs, so a burst of logins queues here instead of
// growing the heap by one hash per request.
var hashSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// hashWait is how long a login waits for a slot before it is answered
// unavailable (retry later): a saturated server says so quickly.
const hashWait = time.Second

// errHashBusy is the cause of a login refused for lack of a hash slot.
var errHashBusy = errors.New("password hashing is saturated")

// acquireHashSlot waits up to hashWait (or until ctx ends) for a hash slot
// and returns its release, or an error matching ErrUnavailable.
func acquireHashSlot(ctx context.Context) (release func(), err error) {
	select {
	case hashSlots <- struct{}{}:
		return func() { <-hashSlots }, nil
	default:
	}
	t := time.NewTimer(hashWait)
	defer t.Stop()
	select {
	case hashSlots <- struct{}{}:
		return func() { <-hashSlots }, nil
	case <-t.C:
		return nil, unavailable(errHashBusy)
	case <-ctx.Done():
		return nil, unavailable(ctx.Err())
	}
}

// Argon2Params are the argon2id cost parameters of new hashes.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultArgon2 follows the OWASP minimum for argon2id (19 MiB, 2 passes).
var DefaultArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1}

var errBadHash = errors.New("unsupported or malformed password hash")

// HashPassword returns an argon2id hash of password in PHC string form
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
func HashPassword(password string, p Argon2Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches hash, an argon2id PHC
// string or a bcrypt hash. It returns an error only for a hash it cannot
// read.
func CheckPassword(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return checkArgon2id(hash, password)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	}
	return false, errBadHash
}

func checkArgon2id(hash, password string) (bool, error) {
	p, salt, want, err := parseArgon2id(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// parseArgon2id reads an argon2id PHC string.
func parseArgon2id(hash string) (p Argon2Params, salt, key []byte, err error) {
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errBadHash
	}
	if p.Memory < 8 || p.Memory > 4<<20 || p.Time < 1 || p.Time > 64 || p.Threads < 1 {
		return p, nil, nil, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err = enc.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	key, err = enc.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// hashCost is the kind and cost of a password hash: checking a password
// against any two hashes of one cost takes the same work.
type hashCost struct {
	Kind   string       // "argon2id" or "bcrypt"
	Argon2 Argon2Params // argon2id: memory, passes, threads
	Bcrypt int          // bcrypt: the cost (log2 of the rounds)
}

// costOf returns the kind and cost of a hash CheckPassword accepts.
func costOf(hash string) (hashCost, error) {
	if strings.HasPrefix(hash, "$argon2id$") {
		p, _, _, err := parseArgon2id(hash)
		if err != nil {
			return hashCost{}, err
		}
		return hashCost{Kind: "argon2id", Argon2: p}, nil
	}
	if _, err := CheckPassword(hash, ""); err != nil {
		return hashCost{}, err
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return hashCost{}, errBadHash
	}
	return hashCost{Kind: "bcrypt", Bcrypt: cost}, nil
}

// dummyHashes caches one hash of a random password per cost, shared by
// every users file of the process (a reload with the same costs does not
// pay for new ones).
var dummyHashes = struct {
	sync.Mutex
	m map[hashCost]string
}{m: map[hashCost]string{}}

// dummyHash returns a hash of cost c of a random password (which no one
// knows, so no password matches it).
func dummyHash(c hashCost) (string, error) {
	dummyHashes.Lock()
	defer dummyHashes.Unlock()
	if h, ok := dummyHashes.m[c]; ok {
		return h, nil
	}
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return "", fmt.Errorf("dummy password: %w", err)
	}
	var h string
	var err error
	switch c.Kind {
	case "argon2id":
		h, err = HashPassword(base64.RawStdEncoding.EncodeToString(pw), c.Argon2)
	case "bcrypt":
		var b []byte
		b, err = bcrypt.GenerateFromPassword([]byte(base64.RawStdEncoding.EncodeToString(pw)), c.Bcrypt)
		h = string(b)
	default:
		err = fmt.Errorf("unknown hash kind %q", c.Kind)
	}
	if err != nil {
		return "", fmt.Errorf("dummy %s hash: %w", c.Kind, err)
	}
	dummyHashes.m[c] = h
	return h, nil
}
