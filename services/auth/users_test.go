package auth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// usersYAML is a users file in deepstream's shape.
func usersYAML(argonHash, bcryptHash string) string {
	return `
alice:
  password: "` + argonHash + `"
  serverData:
    role: admin
  clientData:
    favoriteColor: red
    nested: {a: [1, 2]}
bob:
  password: '` + bcryptHash + `'
  serverData:
    roles: [member, guest, ""]
    role: owner
    team: 7
carol:
  password: "` + argonHash + `"
  serverData:
    roles: [admin]
    role: admin
`
}

func TestParseUsersYAML(t *testing.T) {
	t.Parallel()
	argonHash, bcryptHash := mustHash(t, "alice-pw", cheapArgon2), mustBcrypt(t, "bob-pw")
	for _, ext := range []string{".yaml", ""} { // "" and any other extension: YAML
		u, err := ParseUsers([]byte(usersYAML(argonHash, bcryptHash)), ext)
		if err != nil {
			t.Fatalf("ParseUsers(%q): %v", ext, err)
		}
		if u.Len() != 3 {
			t.Fatalf("Len = %d, want 3", u.Len())
		}
		alice := u.users["alice"]
		if alice.ID != "alice" || alice.PasswordHash != argonHash {
			t.Errorf("alice = %+v", alice)
		}
		if !slices.Equal(alice.Roles, []string{"admin"}) {
			t.Errorf("alice roles = %q, want [admin] from serverData.role", alice.Roles)
		}
		if alice.ClientData["favoriteColor"] != "red" {
			t.Errorf("alice clientData = %v", alice.ClientData)
		}
		// clientData must survive JSON encoding (it is stored in the session).
		if _, err := json.Marshal(alice.ClientData); err != nil {
			t.Errorf("alice clientData does not encode as JSON: %v", err)
		}
		if got := u.users["bob"].Roles; !slices.Equal(got, []string{"guest", "member", "owner"}) {
			t.Errorf("bob roles = %q, want serverData.roles and serverData.role, sorted, without empty ones", got)
		}
		if got := u.users["carol"].Roles; !slices.Equal(got, []string{"admin"}) {
			t.Errorf("carol roles = %q, want [admin] once", got)
		}
		if got := u.users["carol"]; got.ClientData == nil || got.ServerData == nil {
			t.Errorf("carol without clientData has nil maps: %+v", got)
		}
	}
}

func TestParseUsersJSON(t *testing.T) {
	t.Parallel()
	hash := mustHash(t, "pw", cheapArgon2)
	file := map[string]any{
		"dave": map[string]any{
			"password":   hash,
			"serverData": map[string]any{"roles": []string{"member"}},
			"clientData": map[string]any{"nickname": "D"},
		},
		"erin": map[string]any{"password": hash},
	}
	data, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".json", ".JSON"} {
		u, err := ParseUsers(data, ext)
		if err != nil {
			t.Fatalf("ParseUsers(%s): %v", ext, err)
		}
		if u.Len() != 2 {
			t.Fatalf("Len = %d, want 2", u.Len())
		}
		if got := u.users["dave"]; !slices.Equal(got.Roles, []string{"member"}) || got.ClientData["nickname"] != "D" {
			t.Errorf("dave = %+v", got)
		}
		if got := u.users["erin"]; len(got.Roles) != 0 || got.ServerData == nil || got.ClientData == nil {
			t.Errorf("erin = %+v, want no roles and empty (non-nil) data", got)
		}
	}
}

func TestParseUsersRejects(t *testing.T) {
	t.Parallel()
	hash := mustHash(t, "pw", cheapArgon2)
	tests := []struct {
		name, ext, data string
		notInErr        string // must not appear in the error message
	}{
		{"plain-text password", ".yml", "alice:\n  password: hunter2\n", "hunter2"},
		{"plain-text password json", ".json", `{"alice": {"password": "hunter2"}}`, "hunter2"},
		{"missing password", ".yml", "alice:\n  serverData: {role: admin}\n", ""},
		{"null user", ".yml", "alice:\n", ""},
		{"malformed argon2 hash", ".yml", "alice:\n  password: \"$argon2id$v=19$m=64\"\n", ""},
		{"username with space", ".yml", "\"al ice\":\n  password: \"" + hash + "\"\n", ""},
		{"username with slash", ".yml", "\"a/b\":\n  password: \"" + hash + "\"\n", ""},
		{"empty username", ".json", `{"": {"password": "` + hash + `"}}`, ""},
		{"long username", ".json", `{"` + strings.Repeat("a", 129) + `": {"password": "` + hash + `"}}`, ""},
		{"not yaml", ".yml", "alice: [unclosed", ""},
		{"not json", ".json", "{", ""},
		{"yaml list", ".yml", "- alice\n- bob\n", ""},
		{"json wrong type", ".json", `{"alice": "` + hash + `"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := ParseUsers([]byte(tt.data), tt.ext)
			if err == nil {
				t.Fatalf("ParseUsers accepted %q (%d users)", tt.data, u.Len())
			}
			if tt.notInErr != "" && strings.Contains(err.Error(), tt.notInErr) {
				t.Fatalf("error %q repeats the plain-text password", err)
			}
		})
	}
}

func TestParseUsersEmpty(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ data, ext string }{{"", ".yml"}, {"{}", ".json"}, {"{}", ".yml"}} {
		u, err := ParseUsers([]byte(tt.data), tt.ext)
		if err != nil {
			t.Fatalf("ParseUsers(%q): %v", tt.data, err)
		}
		if u.Len() != 0 {
			t.Fatalf("Len = %d", u.Len())
		}
		if tt.ext == ".json" {
			if _, ok := u.Verify("", ""); ok {
				t.Fatal("empty users file verified a login")
			}
		}
	}
}

func TestLoadUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hash := mustBcrypt(t, "pw")
	yml := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(yml, []byte("alice:\n  password: '"+hash+"'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsn := filepath.Join(dir, "users.json")
	if err := os.WriteFile(jsn, []byte(`{"bob": {"password": "`+hash+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, user := range map[string]string{yml: "alice", jsn: "bob"} {
		u, err := LoadUsers(path)
		if err != nil {
			t.Fatalf("LoadUsers(%s): %v", path, err)
		}
		if _, ok := u.Verify(user, "pw"); !ok {
			t.Errorf("LoadUsers(%s): %s cannot log in", path, user)
		}
	}
	if _, err := LoadUsers(filepath.Join(dir, "missing.yml")); err == nil {
		t.Error("LoadUsers of a missing file succeeded")
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	u, err := ParseUsers([]byte(usersYAML(mustHash(t, "alice-pw", cheapArgon2), mustBcrypt(t, "bob-pw"))), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, password string
		ok             bool
	}{
		{"alice", "alice-pw", true},
		{"bob", "bob-pw", true},
		{"alice", "bob-pw", false},
		{"alice", "", false},
		{"alice", "alice-pw ", false},
		{"Alice", "alice-pw", false},
		{"mallory", "alice-pw", false},
	}
	for _, tt := range tests {
		user, ok := u.Verify(tt.user, tt.password)
		if ok != tt.ok {
			t.Errorf("Verify(%q, %q) ok = %v, want %v", tt.user, tt.password, ok, tt.ok)
			continue
		}
		if ok && (user.ID != tt.user || len(user.Roles) == 0) {
			t.Errorf("Verify(%q) = %+v", tt.user, user)
		}
		if !ok && user.ID != "" {
			t.Errorf("failed Verify(%q) returned user %+v", tt.user, user)
		}
	}
}

// TestParseUsersDataIsJSON checks that serverData and clientData the parser
// accepts can be stored in a session and sent at login: YAML can express
// values (timestamps, non-string keys, NaN) that JSON and structpb cannot.
func TestParseUsersDataIsJSON(t *testing.T) {
	t.Parallel()
	hash := mustHash(t, "pw", cheapArgon2)
	for _, data := range []string{
		"joined: 2024-01-01",
		"tags: {1: one}",
		"score: .nan",
		"limit: .inf",
		"blob: !!binary aGVsbG8=",
		"nested: {list: [2024-01-01T10:00:00Z, {a: b}]}",
	} {
		for _, field := range []string{"clientData", "serverData"} {
			file := "alice:\n  password: \"" + hash + "\"\n  " + field + ": {" + data + "}\n"
			u, err := ParseUsers([]byte(file), ".yml")
			if err != nil {
				continue // rejected when loading: the operator sees it at start-up
			}
			if err := loginEncodable(u.users["alice"]); err != nil {
				t.Errorf("%s {%s} accepted, but login cannot encode it: %v", field, data, err)
			}
		}
	}
}

// loginEncodable does what Login does with a user's data.
func loginEncodable(u User) error {
	if _, err := json.Marshal(u.ServerData); err != nil {
		return err
	}
	if _, err := json.Marshal(u.ClientData); err != nil {
		return err
	}
	_, err := structpb.NewStruct(u.ClientData)
	return err
}

// FuzzParseUsers feeds arbitrary users files: ParseUsers never panics, and
// every user it accepts has a valid name and a hash CheckPassword can read.
// Seeds are in testdata/fuzz/FuzzParseUsers.
func FuzzParseUsers(f *testing.F) {
	hash := mustHash(f, "pw", cheapArgon2)
	f.Add([]byte(usersYAML(hash, mustBcrypt(f, "pw"))), false)
	f.Add([]byte(`{"a": {"password": "`+hash+`", "serverData": {"roles": ["x"]}}}`), true)
	f.Add([]byte("a:\n  password: x\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		ext := ".yml"
		if asJSON {
			ext = ".json"
		}
		// Decode as ParseUsers does, to skip hashes too costly to check.
		raw := map[string]fileUser{}
		if asJSON {
			_ = json.Unmarshal(data, &raw)
		} else {
			_ = yaml.Unmarshal(data, &raw)
		}
		for _, fu := range raw {
			if tooCostly(fu.Password) {
				t.Skip("hash parameters too costly for fuzzing")
			}
		}
		u, err := ParseUsers(data, ext)
		if err != nil {
			return
		}
		for name, user := range u.users {
			if name == "" || user.ID != name || strings.ContainsAny(name, "/ \t\r\n") {
				t.Fatalf("accepted invalid username %q (ID %q)", name, user.ID)
			}
			if _, err := CheckPassword(user.PasswordHash, "pw"); err != nil {
				t.Fatalf("accepted user %q with unreadable hash %q: %v", name, user.PasswordHash, err)
			}
			if !slices.IsSorted(user.Roles) || slices.Contains(user.Roles, "") {
				t.Fatalf("user %q roles %q not sorted or with empty role", name, user.Roles)
			}
			if user.ServerData == nil || user.ClientData == nil {
				t.Fatalf("user %q has nil data maps", name)
			}
			if err := loginEncodable(user); err != nil {
				t.Fatalf("user %q accepted with data login cannot encode: %v", name, err)
			}
		}
	})
}
