package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/authz"
)

// User is one entry of a users file.
type User struct {
	ID           string
	PasswordHash string
	Roles        []string
	ServerData   map[string]any
	ClientData   map[string]any
}

// fileUser is the shape deepstream's file authentication uses:
//
//	userA:
//	  password: $argon2id$v=19$...
//	  serverData: {role: admin}
//	  clientData: {favoriteColor: red}
type fileUser struct {
	Password   string         `json:"password" yaml:"password"`
	ServerData map[string]any `json:"serverData" yaml:"serverData"`
	ClientData map[string]any `json:"clientData" yaml:"clientData"`
}

// Users is a set of users loaded from a users file. It is safe for
// concurrent use.
//
// So that the time a login takes does not tell which usernames exist, a
// login checks the password against one hash of every kind and cost in
// the file (see plan): the user's own hash for its cost, a dummy hash of
// each other cost, and only dummies for an unknown username. A file that
// mixes argon2id and bcrypt hashes thus makes every login pay for both;
// keep one kind and cost per file.
type Users struct {
	mu      sync.RWMutex
	users   map[string]User
	costs   map[string]hashCost // username -> cost of their hash
	dummies []costHash          // one per cost in the file, sorted
}

// costHash is a dummy hash and its cost.
type costHash struct {
	cost hashCost
	hash string
}

// LoadUsers reads a users file: YAML (.yml, .yaml) or JSON. Each user's
// roles are serverData.roles (a list) or serverData.role (a string).
// Every password must be an argon2id or bcrypt hash; a plain-text password
// is an error.
func LoadUsers(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	return ParseUsers(data, filepath.Ext(path))
}

// ParseUsers parses the contents of a users file; ext selects the format
// (".json", else YAML).
func ParseUsers(data []byte, ext string) (*Users, error) {
	raw := map[string]fileUser{}
	var err error
	if strings.EqualFold(ext, ".json") {
		err = json.Unmarshal(data, &raw)
	} else {
		err = yaml.Unmarshal(data, &raw)
	}
	if err != nil {
		return nil, fmt.Errorf("parse users file: %w", err)
	}
	u := &Users{users: make(map[string]User, len(raw)), costs: make(map[string]hashCost, len(raw))}
	for name, fu := range raw {
		if name == "" || len(name) > 128 || strings.ContainsAny(name, "/ \t\r\n") {
			return nil, fmt.Errorf("users file: invalid username %q", name)
		}
		if authz.IsServiceID(name) {
			return nil, fmt.Errorf("users file: username %q: the prefix %q is reserved for service principals", name, authz.ServiceIDPrefix)
		}
		cost, err := costOf(fu.Password)
		if err != nil {
			return nil, fmt.Errorf("users file: user %q: password must be an argon2id or bcrypt hash (use `sluiced hash-password`)", name)
		}
		u.costs[name] = cost
		serverData, err := jsonObject(fu.ServerData)
		if err != nil {
			return nil, fmt.Errorf("users file: user %q: serverData: %w", name, err)
		}
		clientData, err := jsonObject(fu.ClientData)
		if err != nil {
			return nil, fmt.Errorf("users file: user %q: clientData: %w", name, err)
		}
		u.users[name] = User{
			ID:           name,
			PasswordHash: fu.Password,
			Roles:        rolesOf(serverData),
			ServerData:   serverData,
			ClientData:   clientData,
		}
	}
	// One dummy hash per cost in the file (the default argon2id cost for
	// a file without users), so that every login does the same work.
	costs := map[hashCost]bool{}
	for _, c := range u.costs {
		costs[c] = true
	}
	if len(costs) == 0 {
		costs[hashCost{Kind: "argon2id", Argon2: DefaultArgon2}] = true
	}
	for c := range costs {
		h, err := dummyHash(c)
		if err != nil {
			return nil, err
		}
		u.dummies = append(u.dummies, costHash{cost: c, hash: h})
	}
	slices.SortFunc(u.dummies, func(a, b costHash) int { return strings.Compare(fmt.Sprint(a.cost), fmt.Sprint(b.cost)) })
	return u, nil
}

// jsonObject returns m as plain JSON values (what a session stores and
// Login sends). YAML can express values JSON cannot (non-string keys, NaN,
// timestamps); they are rejected here rather than failing every login.
func jsonObject(m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	if m == nil {
		return out, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	return out, nil
}

func rolesOf(serverData map[string]any) []string {
	var roles []string
	switch r := serverData["roles"].(type) {
	case []any:
		for _, v := range r {
			if s, ok := v.(string); ok && s != "" {
				roles = append(roles, s)
			}
		}
	}
	if r, ok := serverData["role"].(string); ok && r != "" && !slices.Contains(roles, r) {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	return roles
}

// Verify returns the user if username exists and password matches. It
// returns ok=false otherwise, in about the same time either way.
func (u *Users) Verify(username, password string) (User, bool) {
	user, found, ok, err := u.check(context.Background(), username, password)
	if err != nil || !found || !ok {
		return User{}, false
	}
	return user, true
}

// plan returns the user of username (found is false if unknown) and the
// hashes a login checks the password against: one of each cost in the
// file, in a fixed order. For a known user their own hash stands in for
// the dummy of its cost, so whoever logs in, known or not, the same
// work is done.
func (u *Users) plan(username string) (user User, found bool, hashes []string) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	user, found = u.users[username]
	own := u.costs[username]
	hashes = make([]string, len(u.dummies))
	for i, d := range u.dummies {
		hashes[i] = d.hash
		if found && d.cost == own {
			hashes[i] = user.PasswordHash
		}
	}
	return user, found, hashes
}

// check looks username up and checks password against every hash of its
// plan; only the user's own hash can match. It holds one hash slot
// throughout, and returns an error matching ErrUnavailable when none comes
// free in time.
func (u *Users) check(ctx context.Context, username, password string) (user User, found, ok bool, err error) {
	release, err := acquireHashSlot(ctx)
	if err != nil {
		return User{}, false, false, err
	}
	defer release()
	user, found, hashes := u.plan(username)
	for _, h := range hashes {
		match, err := CheckPassword(h, password)
		if found && h == user.PasswordHash && err == nil && match {
			ok = true
		}
	}
	return user, found, ok, nil
}

var _ PasswordAuthenticator = (*Users)(nil)

// Name implements PasswordAuthenticator: "file".
func (u *Users) Name() string { return "file" }

// Login implements PasswordAuthenticator. It returns ErrUnknownUser for a
// username not in the file (after spending the time of a hash check, so
// that timing does not tell which usernames exist) and ErrRefused for a
// wrong password.
func (u *Users) Login(ctx context.Context, username, password string, _ LoginMeta) (Identity, error) {
	user, found, ok, err := u.check(ctx, username, password)
	switch {
	case err != nil:
		return Identity{}, err
	case !found:
		return Identity{}, ErrUnknownUser
	case !ok:
		return Identity{}, ErrRefused
	}
	return Identity{ID: user.ID, Roles: user.Roles, ServerData: user.ServerData, ClientData: user.ClientData}, nil
}

// replace swaps in the users of n (a reload of the file).
func (u *Users) replace(n *Users) {
	n.mu.RLock()
	users, costs, dummies := n.users, n.costs, n.dummies
	n.mu.RUnlock()
	u.mu.Lock()
	u.users, u.costs, u.dummies = users, costs, dummies
	u.mu.Unlock()
}

// Len returns the number of users.
func (u *Users) Len() int {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.users)
}
