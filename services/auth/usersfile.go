package auth

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"
)

// UsersFileConfig configures OpenUsersFile. The zero value of each field is
// its documented default.
type UsersFileConfig struct {
	// Interval is how often the file is checked for changes (modification
	// time, size and identity). Default 1s.
	Interval time.Duration
	// Logger receives reloads and reload errors. Nil discards them.
	Logger *slog.Logger
}

// UsersFile is the `file` authenticator: a users file (see LoadUsers) that
// is reloaded when it changes on disk. A new file that does not load (bad
// YAML, a plain-text password) is logged and the previous users stay in
// force. It is safe for concurrent use; the caller must call Close.
type UsersFile struct {
	*Users
	path     string
	interval time.Duration
	log      *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

var _ PasswordAuthenticator = (*UsersFile)(nil)

// OpenUsersFile loads the users file at path and watches it. It fails if
// the file does not load now.
func OpenUsersFile(path string, cfg UsersFileConfig) (*UsersFile, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	users, err := LoadUsers(path)
	if err != nil {
		return nil, err
	}
	f := &UsersFile{
		Users:    users,
		path:     path,
		interval: cfg.Interval,
		log:      cfg.Logger,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go f.watch(st)
	return f, nil
}

// Close stops watching the file and waits for the watcher to end. The
// users loaded last stay usable.
func (f *UsersFile) Close() {
	f.once.Do(func() { close(f.stop) })
	<-f.done
}

func (f *UsersFile) watch(last os.FileInfo) {
	defer close(f.done)
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		st, err := os.Stat(f.path)
		if err != nil {
			// Keep last: when the file comes back it differs from it.
			f.log.Error("users file: stat", "path", f.path, "err", err)
			continue
		}
		if sameFile(last, st) {
			continue
		}
		last = st
		users, err := LoadUsers(f.path)
		if err != nil {
			f.log.Error("users file: reload failed; keeping the previous users", "path", f.path, "err", err)
			continue
		}
		f.Users.replace(users)
		f.log.Info("users file reloaded", "path", f.path, "users", users.Len())
	}
}

// sameFile reports whether b is a, unchanged: same file (inode), same
// modification time, same size. A file replaced by a rename is a new file.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// Login implements PasswordAuthenticator with the users loaded last.
func (f *UsersFile) Login(ctx context.Context, username, password string, meta LoginMeta) (Identity, error) {
	return f.Users.Login(ctx, username, password, meta)
}
