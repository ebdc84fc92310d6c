package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"

	"go.yaml.in/yaml/v3"
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
type Users struct {
	mu    gosync.RWMutex
	users map[string]User
	dummy string
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
	u := &Users{users: make(map[string]User, len(raw))}
	for name, fu := range raw {
		if name == "" || len(name) > 128 || strings.ContainsAny(name, "/ \t\r\n") {
			return nil, fmt.Errorf("users file: invalid username %q", name)
		}
		if _, err := CheckPassword(fu.Password, ""); err != nil {
			return nil, fmt.Errorf("users file: user %q: password must be an argon2id or bcrypt hash (use `sluiced hash-password`)", name)
		}
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
	// Unknown usernames are checked against this hash so that a login
	// takes as long whether or not the user exists.
	dummy, err := HashPassword("sluice-dummy-password", DefaultArgon2)
	if err != nil {
		return nil, err
	}
	u.dummy = dummy
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
	user, found, ok := u.check(username, password)
	if !found || !ok {
		return User{}, false
	}
	return user, true
}

// check looks username up and checks password, against a dummy hash when
// the user does not exist so that both cases take about as long.
func (u *Users) check(username, password string) (user User, found, ok bool) {
	u.mu.RLock()
	user, found = u.users[username]
	dummy := u.dummy
	u.mu.RUnlock()
	hash := user.PasswordHash
	if !found {
		hash = dummy
	}
	match, err := CheckPassword(hash, password)
	return user, found, err == nil && match
}

var _ PasswordAuthenticator = (*Users)(nil)

// Name implements PasswordAuthenticator: "file".
func (u *Users) Name() string { return "file" }

// Login implements PasswordAuthenticator. It returns ErrUnknownUser for a
// username not in the file (after spending the time of a hash check, so
// that timing does not tell which usernames exist) and ErrRefused for a
// wrong password.
func (u *Users) Login(_ context.Context, username, password string, _ LoginMeta) (Identity, error) {
	user, found, ok := u.check(username, password)
	switch {
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
	users, dummy := n.users, n.dummy
	n.mu.RUnlock()
	u.mu.Lock()
	u.users, u.dummy = users, dummy
	u.mu.Unlock()
}

// Len returns the number of users.
func (u *Users) Len() int {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.users)
}
