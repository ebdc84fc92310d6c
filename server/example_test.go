package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicehq/sluice/authz"
	sluice "github.com/sluicehq/sluice/client"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/server"
	"github.com/sluicehq/sluice/services"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/kit"
)

// whoami is the service of an app team's own: one proto (registered here at
// run time, as its generated package would at init) and one module.
const whoamiName = "example.whoami.v1.WhoamiService"

// whoamiModule answers Whoami with the caller's user id, for any
// authenticated caller.
func whoamiModule(t *testing.T) kit.Module {
	t.Helper()
	if _, err := protoregistry.GlobalFiles.FindDescriptorByName(whoamiName); err != nil {
		fdp := &descriptorpb.FileDescriptorProto{
			Name:       proto.String("example/whoami/v1/whoami.proto"),
			Package:    proto.String("example.whoami.v1"),
			Syntax:     proto.String("proto3"),
			Dependency: []string{"google/protobuf/empty.proto", "google/protobuf/wrappers.proto"},
			Service: []*descriptorpb.ServiceDescriptorProto{{
				Name: proto.String("WhoamiService"),
				Method: []*descriptorpb.MethodDescriptorProto{{
					Name: proto.String("Whoami"), InputType: proto.String(".google.protobuf.Empty"), OutputType: proto.String(".google.protobuf.StringValue"),
				}},
			}},
		}
		fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err != nil {
			t.Fatal(err)
		}
		if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
			t.Fatal(err)
		}
	}
	const proc = "/" + whoamiName + "/Whoami"
	return kit.Module{
		Name: whoamiName,
		Mount: func(_ *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
			return "/" + whoamiName + "/", connect.NewUnaryHandler(proc, func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[wrapperspb.StringValue], error) {
				return connect.NewResponse(wrapperspb.String(authz.PrincipalFrom(ctx).ID)), nil
			}, opts...)
		},
		Policies: []authz.Policy{{Procedure: proc, Action: "whoami.whoami", Description: "any authenticated principal"}},
	}
}

// An app team imports the server and runs it with its own modules: the
// framework's services and its own are served over HTTP, its policy is
// enforced, the reference app's services are not served, and nothing is
// served at "/" without a Web.
func TestServerWithAppModules(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hash, err := auth.HashPassword("alice-pass", auth.Argon2Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users.yml")
	if err := os.WriteFile(users, fmt.Appendf(nil, "alice:\n  password: %q\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	app, err := server.Open(ctx, server.Config{
		DatabaseURL: testenv.Postgres(t),
		NATSPrefix:  testenv.Prefix(),
		UsersFile:   users,
		Modules:     []kit.Module{whoamiModule(t)},
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := app.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-sctx.Done():
			t.Error("serve did not return after shutdown")
		}
	})
	base := "http://" + ln.Addr().String()

	c := sluice.New(base, sluice.Config{})
	whoami := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](c.HTTPClient(), base+"/"+whoamiName+"/Whoami", c.Options()...)
	_, err = whoami.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous Whoami = %v, want unauthenticated", err)
	}
	if err := c.Login(ctx, "alice", "alice-pass"); err != nil {
		t.Fatalf("login (the framework's auth service): %v", err)
	}
	res, err := whoami.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
	if err != nil || res.Msg.GetValue() != "alice" {
		t.Fatalf("Whoami = %v, %v; want alice", res, err)
	}
	// The framework's services are there, the reference app's are not.
	user := userv1connect.NewUserServiceClient(c.HTTPClient(), base, c.Options()...)
	if _, err := user.SetDisplayName(ctx, connect.NewRequest(&userv1.SetDisplayNameRequest{DisplayName: "Alice"})); err != nil {
		t.Fatalf("SetDisplayName (a framework service): %v", err)
	}
	org := orgv1connect.NewOrgServiceClient(c.HTTPClient(), base, c.Options()...)
	_, err = org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnimplemented {
		t.Fatalf("CreateOrg (the reference app, not served) = %v, want unimplemented", err)
	}
	// No Web: "/" is a 404, with the web security headers all the same.
	hres, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, hres.Body)
	hres.Body.Close()
	if hres.StatusCode != http.StatusNotFound || hres.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET / without Web = %d, CSP %q; want 404 with the CSP", hres.StatusCode, hres.Header.Get("Content-Security-Policy"))
	}
}

// An app team's main: the framework's services plus the reference app's
// and a module of its own, served on :8080 until ctx ends.
func ExampleOpen() {
	ctx := context.Background()
	var whoami kit.Module // the app's module, as in TestServerWithAppModules
	app, err := server.Open(ctx, server.Config{
		UsersFile: "users.yml",
		Modules:   append(services.ReferenceApp(), whoami),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	go func() {
		<-ctx.Done()
		_ = app.Shutdown(context.Background())
	}()
	if err := app.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
