package services

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/services/kit"
)

// serve assembles a server of modules (no database is touched: every call
// below is refused or answered before a handler reads anything) and serves
// it over HTTP/2 with TLS, as reflection's bidirectional stream needs.
func serve(t *testing.T, app []kit.Module) *httptest.Server {
	t.Helper()
	srv, err := New(Config{Modules: app})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// registered checks that the server at ts serves the service name: its
// procedures are routed (a malformed body is refused by the service, not
// 404), health reports it SERVING and reflection lists it.
func registered(t *testing.T, ts *httptest.Server, name string) {
	t.Helper()
	procs, err := kit.Procedures(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, proc := range procs {
		res, err := ts.Client().Post(ts.URL+proc, "application/json", strings.NewReader(`{"malformed`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusNotFound {
			t.Errorf("%s is not mounted", proc)
		}
	}
	health := grpchealth.NewClient(ts.Client(), ts.URL)
	st, err := health.Check(context.Background(), &grpchealth.CheckRequest{Service: name})
	if err != nil || st.Status != grpchealth.StatusServing {
		t.Errorf("health of %s = %v, %v; want serving", name, st, err)
	}
	stream := grpcreflect.NewClient(ts.Client(), ts.URL).NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if !slices.Contains(names, protoreflect.FullName(name)) {
		t.Errorf("reflection lists %v, not %s", names, name)
	}
}

// Every service of the sluice.* protos is in the default module list,
// mounted, in health and reflection, with one policy per procedure (and,
// by TestPolicyMatrix, a row per procedure in the policy matrix).
func TestEveryServiceIsRegistered(t *testing.T) {
	t.Parallel()
	modules := Modules(nil)
	var listed []string
	for _, m := range modules {
		if m.Name != "" {
			listed = append(listed, m.Name)
		}
	}
	var services []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(string(fd.Package()), "sluice.") {
			for i := range fd.Services().Len() {
				services = append(services, string(fd.Services().Get(i).FullName()))
			}
		}
		return true
	})
	if len(services) < 9 {
		t.Fatalf("the proto walk found only %v", services)
	}
	ts := serve(t, nil)
	for _, name := range services {
		if !slices.Contains(listed, name) {
			t.Errorf("%s is in the protos but in no module", name)
			continue
		}
		registered(t, ts, name)
	}
	if err := kit.Check(modules); err != nil {
		t.Fatal(err)
	}
}

// The server refuses to start when a procedure of a served service has no
// policy, and names it; likewise for a policy of a service it does not
// serve or a service listed twice.
func TestIncompleteModulesRefuseToStart(t *testing.T) {
	t.Parallel()
	withoutSetColor := ReferenceApp()
	for i, m := range withoutSetColor {
		if m.Name == colorv1connect.ColorServiceName {
			m.Policies = slices.DeleteFunc(slices.Clone(m.Policies), func(p authz.Policy) bool {
				return p.Procedure == colorv1connect.ColorServiceSetColorProcedure
			})
			withoutSetColor[i] = m
		}
	}
	withoutColor := func() []kit.Module {
		return slices.DeleteFunc(ReferenceApp(), func(m kit.Module) bool { return m.Name == colorv1connect.ColorServiceName })
	}
	noColorService := withoutColor()
	strayPolicy := withoutColor()
	strayPolicy[0].Policies = append(slices.Clone(strayPolicy[0].Policies), authz.Policy{Procedure: colorv1connect.ColorServiceSetColorProcedure, Action: "x"})
	for _, tt := range []struct {
		name string
		app  []kit.Module
		want string
	}{
		{"procedure without a policy", withoutSetColor, "procedures without a policy: " + colorv1connect.ColorServiceSetColorProcedure},
		{"policy of a service not served", strayPolicy, "policy for " + colorv1connect.ColorServiceSetColorProcedure + ", which no listed service serves"},
		{"service listed twice", append(ReferenceApp(), ReferenceApp()[0]), "is listed twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Config{Modules: tt.app})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error saying %q", err, tt.want)
			}
			if _, _, err := NewPolicyTable(nil, Modules(tt.app)); err == nil {
				t.Fatal("NewPolicyTable accepted the modules")
			}
		})
	}
	// The app may leave out reference services it does not serve.
	if _, err := New(Config{Modules: noColorService}); err != nil {
		t.Fatalf("an app without the color demo: %v", err)
	}
}

// echoService is a service an app team adds: one proto (registered here at
// run time, as a generated package would at init), one module, one entry
// in the module list; no other edit.
func echoModule(t *testing.T) kit.Module {
	t.Helper()
	const name = "example.echo.v1.EchoService"
	if _, err := protoregistry.GlobalFiles.FindDescriptorByName(name); err != nil {
		fdp := &descriptorpb.FileDescriptorProto{
			Name:       proto.String("example/echo/v1/echo.proto"),
			Package:    proto.String("example.echo.v1"),
			Syntax:     proto.String("proto3"),
			Dependency: []string{"google/protobuf/empty.proto"},
			Service: []*descriptorpb.ServiceDescriptorProto{{
				Name: proto.String("EchoService"),
				Method: []*descriptorpb.MethodDescriptorProto{{
					Name: proto.String("Echo"), InputType: proto.String(".google.protobuf.Empty"), OutputType: proto.String(".google.protobuf.Empty"),
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
	const proc = "/" + name + "/Echo"
	return kit.Module{
		Name: name,
		Mount: func(_ *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
			h := connect.NewUnaryHandler(proc, func(context.Context, *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
				return connect.NewResponse(&emptypb.Empty{}), nil
			}, opts...)
			return "/" + name + "/", h
		},
		Policies: []authz.Policy{{Procedure: proc, Action: "echo.echo", Description: "any authenticated principal"}},
	}
}

// An app's own service needs its module in the list and nothing else: it is
// mounted, in health and reflection, and its policy is enforced (an
// anonymous call is unauthenticated, not an unknown procedure).
func TestAddingAServiceIsOneLine(t *testing.T) {
	t.Parallel()
	echo := echoModule(t)
	ts := serve(t, append(ReferenceApp(), echo))
	registered(t, ts, echo.Name)
	registered(t, ts, userv1connect.UserServiceName) // the framework is still there
	client := connect.NewClient[emptypb.Empty, emptypb.Empty](ts.Client(), ts.URL+"/"+echo.Name+"/Echo")
	_, err := client.CallUnary(context.Background(), connect.NewRequest(&emptypb.Empty{}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated {
		t.Fatalf("anonymous Echo = %v, want unauthenticated", err)
	}
	// Without its policy the same list refuses to start.
	echo.Policies = nil
	if _, err := New(Config{Modules: append(ReferenceApp(), echo)}); err == nil || !strings.Contains(err.Error(), "/Echo") {
		t.Fatalf("New without the Echo policy = %v, want a refusal naming it", err)
	}
}

// Every response carries nosniff, those connect-go writes itself too.
func TestNoSniffEverywhere(t *testing.T) {
	t.Parallel()
	ts := serve(t, nil)
	for _, req := range []struct{ path, ctype string }{
		{"/sluice.user.v1.UserService/SetAvatarUrl", "text/plain"}, // unsupported media type, written by connect-go
		{"/sluice.user.v1.UserService/SetAvatarUrl", "application/json"},
		{"/nope", "application/json"},
	} {
		res, err := ts.Client().Post(ts.URL+req.path, req.ctype, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
			t.Errorf("%s (%s): %d with X-Content-Type-Options %q, want nosniff once", req.path, req.ctype, res.StatusCode, got)
		}
	}
}
