// Package cli is the `sluice` command: a terminal client for a Sluice
// server built on package client. cmd/sluice is its main.
//
//	sluice login USER            (password on stdin) stores the session token
//	sluice logout
//	sluice whoami
//	sluice get KEY...
//	sluice list SCOPE [-before SEQ] [-limit N]
//	sluice tail KEY|SCOPE...     (also -record KEY, -scope SCOPE, -limit N)
//	sluice call PACKAGE.SERVICE/METHOD [JSON]   (any RPC, JSON in and out)
//
// The server is -url or SLUICE_URL (default http://localhost:8080). The
// token is -token, else SLUICE_TOKEN, else the one `sluice login` stored
// (mode 0600) under the user's config directory (-config-dir). Output is
// protojson, one message per line.
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sluicehq/sluice/client"
	_ "github.com/sluicehq/sluice/gen/sluice/access/v1" // linked for call
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	_ "github.com/sluicehq/sluice/gen/sluice/channel/v1" // linked for call
	_ "github.com/sluicehq/sluice/gen/sluice/color/v1"   // linked for call
	_ "github.com/sluicehq/sluice/gen/sluice/message/v1" // linked for call
	_ "github.com/sluicehq/sluice/gen/sluice/org/v1"     // linked for call
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	_ "github.com/sluicehq/sluice/gen/sluice/user/v1" // linked for call
)

const usage = `usage: sluice [-url URL] [-token TOKEN] COMMAND ...

commands:
  login USER             read the password on stdin; store the session token
  logout                 end the session and forget the token
  whoami                 who the token is
  get KEY...             the current state of records
  list SCOPE             a page of a scope's records, newest first (-before SEQ, -limit N)
  tail KEY|SCOPE...      print every event of records and scopes as JSON lines,
                         resuming after any cut (a name with one slash, user/42, is
                         followed as a scope; -record KEY, -scope SCOPE to say which;
                         -limit N: window of scopes); exits 1 when access is revoked
  call SERVICE/METHOD [JSON]
                         call any unary RPC, e.g. sluice.user.v1.UserService/SetDisplayName '{"displayName":"Ann"}'

The server is -url or SLUICE_URL (default http://localhost:8080). The token is
-token, else SLUICE_TOKEN, else the one login stored under the config directory.
Output is protojson, one message per line.
`

// Run runs the command in args (without the program name) and returns the
// exit status: 0, 1 when the server refused, 2 on a usage error.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	url := fs.String("url", envOr("SLUICE_URL", "http://localhost:8080"), "server URL (SLUICE_URL)")
	token := fs.String("token", os.Getenv("SLUICE_TOKEN"), "session token (SLUICE_TOKEN; default: the stored one)")
	dir := fs.String("config-dir", "", "where login stores the token (default: the user's config directory)/sluice")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	store, err := newTokenStore(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 2
	}
	if *token == "" {
		*token = store.load()
	}
	c := client.New(*url, client.Config{Token: *token})
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "login":
		err = login(ctx, c, store, rest, stdin, stdout)
	case "logout":
		err = logout(ctx, c, store)
	case "whoami":
		err = whoami(ctx, c, stdout)
	case "get":
		err = get(ctx, c, rest, stdout)
	case "list":
		err = list(ctx, c, rest, stdout, stderr)
	case "tail", "subscribe":
		err = tail(ctx, c, rest, stdout, stderr)
	case "call":
		err = call(ctx, c, rest, stdout)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return 2
	}
	fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
	return 1
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// printMsg writes msg as one line of protojson.
func printMsg(w io.Writer, msg proto.Message) error {
	b, err := protojson.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func login(ctx context.Context, c *client.Client, store tokenStore, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{"want: login USER (password on stdin)"}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := c.Login(ctx, args[0], strings.TrimRight(line, "\r\n")); err != nil {
		return err
	}
	if err := store.save(c.Token()); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "logged in as %s; token stored in %s\n", args[0], store.path)
	return err
}

func logout(ctx context.Context, c *client.Client, store tokenStore) error {
	if c.Token() == "" {
		return usageError{"not logged in"}
	}
	_, err := authv1connect.NewAuthServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...).
		Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{}))
	if rerr := store.remove(); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// tokenStore keeps the session token in a file only the user can read.
type tokenStore struct{ path string }

func newTokenStore(dir string) (tokenStore, error) {
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return tokenStore{}, fmt.Errorf("config directory: %w", err)
		}
		dir = filepath.Join(base, "sluice")
	}
	return tokenStore{path: filepath.Join(dir, "token")}, nil
}

func (s tokenStore) load() string {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (s tokenStore) save(token string) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	// Written under another name and renamed: never a half-written token.
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

func (s tokenStore) remove() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget token: %w", err)
	}
	return nil
}

func whoami(ctx context.Context, c *client.Client, stdout io.Writer) error {
	res, err := authv1connect.NewAuthServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...).
		WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	if err != nil {
		return err
	}
	return printMsg(stdout, res.Msg)
}

func get(ctx context.Context, c *client.Client, keys []string, stdout io.Writer) error {
	if len(keys) == 0 {
		return usageError{"want: get KEY..."}
	}
	res, err := syncv1connect.NewSyncServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...).
		Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: keys}))
	if err != nil {
		return err
	}
	return printMsg(stdout, res.Msg)
}

func list(ctx context.Context, c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	before := fs.Int64("before", 0, "records before this seq (0: from the newest)")
	limit := fs.Int("limit", 50, "page size (1..500)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usageError{"want: list [-before SEQ] [-limit N] SCOPE"}
	}
	res, err := syncv1connect.NewSyncServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...).
		List(ctx, connect.NewRequest(&syncv1.ListRequest{Scope: fs.Arg(0), BeforeSeq: *before, Limit: int32(*limit)}))
	if err != nil {
		return err
	}
	return printMsg(stdout, res.Msg)
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// errRevoked ends tail when access to a target was revoked.
var errRevoked = errors.New("access revoked")

func tail(ctx context.Context, c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var records, scopes stringList
	fs.Var(&records, "record", "a record key (repeatable)")
	fs.Var(&scopes, "scope", "a scope (repeatable)")
	limit := fs.Int("limit", 0, "window of each scope: the newest N records (0: the whole scope)")
	if err := fs.Parse(args); err != nil {
		return usageError{"want: tail KEY|SCOPE... [-record KEY]... [-scope SCOPE]... [-limit N]"}
	}
	for _, name := range fs.Args() {
		// type/id is a scope (and, for self-scoped types, its record);
		// longer keys (message/7/42) are records.
		if strings.Count(name, "/") == 1 {
			scopes = append(scopes, name)
		} else {
			records = append(records, name)
		}
	}
	if len(records)+len(scopes) == 0 {
		return usageError{"want: tail KEY|SCOPE... [-record KEY]... [-scope SCOPE]... [-limit N]"}
	}
	var t client.Targets
	for _, k := range records {
		t.Records = append(t.Records, &syncv1.RecordTarget{Key: k})
	}
	for _, s := range scopes {
		t.Scopes = append(t.Scopes, &syncv1.ScopeTarget{Scope: s, Limit: int32(*limit)})
	}
	return c.Subscribe(ctx, t, client.SubscribeOptions{
		OnResume: func(err error) { fmt.Fprintf(stderr, "sluice: stream ended (%v); resuming\n", err) },
	}, func(ev *syncv1.SubscribeResponse) error {
		if err := printMsg(stdout, ev); err != nil {
			return err
		}
		if r := ev.GetRevoked(); r != nil {
			return fmt.Errorf("%w: %s%s: %s", errRevoked, r.GetKey(), r.GetScope(), r.GetReason())
		}
		return nil
	})
}

// call sends any unary RPC linked into the binary, JSON in and out.
func call(ctx context.Context, c *client.Client, args []string, stdout io.Writer) error {
	if len(args) < 1 || len(args) > 2 {
		return usageError{"want: call PACKAGE.SERVICE/METHOD [JSON]"}
	}
	svc, method, ok := strings.Cut(strings.TrimPrefix(args[0], "/"), "/")
	if !ok {
		return usageError{"want PACKAGE.SERVICE/METHOD, e.g. sluice.user.v1.UserService/SetDisplayName"}
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return usageError{"unknown service " + svc}
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return usageError{svc + " is not a service"}
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil || md.IsStreamingClient() || md.IsStreamingServer() {
		return usageError{"no unary method " + method + " in " + svc}
	}
	req := dynamicpb.NewMessage(md.Input())
	body := "{}"
	if len(args) == 2 {
		body = args[1]
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal([]byte(body), req); err != nil {
		return usageError{"request: " + err.Error()}
	}
	opts := append(c.Options(), connect.WithSchema(md), connect.WithResponseInitializer(func(_ connect.Spec, msg any) error {
		*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(md.Output())
		return nil
	}))
	opts = append(opts, connect.WithIdempotency(idempotencyOf(md)))
	res, err := connect.NewClient[dynamicpb.Message, dynamicpb.Message](c.HTTPClient(), c.BaseURL()+"/"+svc+"/"+method, opts...).
		CallUnary(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	return printMsg(stdout, res.Msg)
}

// idempotencyOf reads the method's idempotency_level option: read-only
// methods get no idempotency key.
func idempotencyOf(md protoreflect.MethodDescriptor) connect.IdempotencyLevel {
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	switch opts.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		return connect.IdempotencyNoSideEffects
	case descriptorpb.MethodOptions_IDEMPOTENT:
		return connect.IdempotencyIdempotent
	}
	return connect.IdempotencyUnknown
}
