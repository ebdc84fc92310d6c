package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A panicking handler (unary or streaming) answers internal "internal
// error" instead of resetting the connection; the panic is logged once
// with the procedure, and the server keeps serving on the same connection.
func TestHandlerPanicIsRecovered(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	const unary, stream = "/test.v1.T/PanicUnary", "/test.v1.T/PanicStream"
	const ok = "/test.v1.T/Ok"
	mux := http.NewServeMux()
	seen := &codesSeen{}
	opts := HandlerOptions(seen, ErrorInterceptor(log)) // seen: like metrics, outside the error mapping
	mux.Handle(unary, connect.NewUnaryHandler(unary, func(context.Context, *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
		panic("boom: secret state 0xdeadbeef")
	}, opts...))
	mux.Handle(stream, connect.NewServerStreamHandler(stream, func(_ context.Context, _ *connect.Request[emptypb.Empty], s *connect.ServerStream[emptypb.Empty]) error {
		if err := s.Send(&emptypb.Empty{}); err != nil {
			return err
		}
		var m map[string]int
		//lint:ignore SA5000 the panic is the point: a runtime error after the stream started
		m["x"] = 1
		return nil
	}, opts...))
	mux.Handle(ok, connect.NewUnaryHandler(ok, func(context.Context, *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
		return connect.NewResponse(&emptypb.Empty{}), nil
	}, opts...))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	for _, proto := range []struct {
		name string
		opt  []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}}} {
		hc := srv.Client()
		_, err := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, srv.URL+unary, proto.opt...).CallUnary(t.Context(), connect.NewRequest(&emptypb.Empty{}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeInternal || ce.Message() != "internal error" {
			t.Fatalf("%s unary panic: %v, want internal \"internal error\"", proto.name, err)
		}
		s, err := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, srv.URL+stream, proto.opt...).CallServerStream(t.Context(), connect.NewRequest(&emptypb.Empty{}))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for s.Receive() {
			n++
		}
		if !errors.As(s.Err(), &ce) || ce.Code() != connect.CodeInternal || ce.Message() != "internal error" || n != 1 {
			t.Fatalf("%s stream panic: %d messages, %v; want 1 and internal \"internal error\"", proto.name, n, s.Err())
		}
		s.Close()
		// The same connection still serves.
		if _, err := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, srv.URL+ok, proto.opt...).CallUnary(t.Context(), connect.NewRequest(&emptypb.Empty{})); err != nil {
			t.Fatalf("%s call after panics: %v", proto.name, err)
		}
	}
	out := logs.String()
	for _, want := range []string{unary, stream, "boom: secret state 0xdeadbeef", "assignment to entry in nil map", "goroutine"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "procedure="+unary); n != 3 {
		t.Errorf("unary panic logged %d times, want once per call (3)", n)
	}
	// An interceptor outside the error mapping sees the code clients see.
	if got := seen.get(); strings.Count(got, "internal") != 6 {
		t.Errorf("outer interceptor saw %s, want internal for each of the 6 panics", got)
	}
}

// codesSeen records the code of every call it wraps.
type codesSeen struct {
	mu    sync.Mutex
	codes []string
}

func (c *codesSeen) add(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	c.codes = append(c.codes, code)
}

func (c *codesSeen) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.codes, " ")
}

func (c *codesSeen) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		c.add(err)
		return res, err
	}
}

func (c *codesSeen) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (c *codesSeen) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		c.add(err)
		return err
	}
}

// Errors connect-go builds itself (decoding, limits, protocol) keep a
// meaningful code, but the client reads a message written for it, never
// connect-go's or the decoder's wording.
func TestToConnectRewritesConnectBuiltErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		code connect.Code
		msg  string
		logs bool
	}{
		{"decode", connect.NewError(connect.CodeInvalidArgument, errors.New("unmarshal message: unmarshal into *userv1.SetDisplayNameRequest: proto: (line 1:17): invalid value")),
			connect.CodeInvalidArgument, "malformed request body", false},
		{"size", connect.NewError(connect.CodeResourceExhausted, errors.New("message size 70000 is larger than configured max 65536")),
			connect.CodeResourceExhausted, "request too large: at most 65536 bytes", false},
		{"cardinality", connect.NewError(connect.CodeUnimplemented, errors.New("unary request has multiple messages")),
			connect.CodeUnimplemented, "unsupported request", false},
		{"canceled", connect.NewError(connect.CodeCanceled, errors.New("read: context canceled")), connect.CodeCanceled, "canceled", false},
		{"deadline", connect.NewError(connect.CodeDeadlineExceeded, errors.New("x")), connect.CodeDeadlineExceeded, "deadline exceeded", false},
		{"marshal", connect.NewError(connect.CodeInternal, errors.New("marshal message: google.protobuf.Timestamp: seconds out of range 253402300800")),
			connect.CodeInternal, "internal error", true},
		{"write", connect.NewError(connect.CodeUnknown, errors.New("write envelope: broken pipe")), connect.CodeInternal, "internal error", true},
		{"malformed", fmt.Errorf("receive: %w", ErrMalformed), connect.CodeInvalidArgument, "malformed request body", false},
		{"unavailable dependency", fmt.Errorf("login: %w", Unavailable("authentication backend unavailable")),
			connect.CodeUnavailable, "authentication backend unavailable", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			err := ToConnect(log, testProcedure, tt.err)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != tt.code || ce.Message() != tt.msg {
				t.Fatalf("ToConnect(%v) = %v, want %v %q", tt.err, err, tt.code, tt.msg)
			}
			if logged := logs.Len() > 0; logged != tt.logs {
				t.Errorf("logged %v (%q), want %v", logged, logs.String(), tt.logs)
			}
			// Mapping is idempotent: an already mapped error is kept.
			if again := ToConnect(log, testProcedure, err); again.Error() != err.Error() {
				t.Errorf("ToConnect twice = %v, want %v", again, err)
			}
		})
	}
}

// Over the wire, a body that does not decode is invalid_argument
// "malformed request body" on every protocol and codec, unary and
// streaming, and the handler never runs. A response that cannot be encoded
// is internal without the encoder's text.
func TestMalformedBodyOverTheWire(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var ran sync.Map
	const unary, stream, badTime = "/test.v1.T/Echo", "/test.v1.T/Stream", "/test.v1.T/BadTime"
	mux := http.NewServeMux()
	opts := HandlerOptions(ErrorInterceptor(log))
	mux.Handle(unary, connect.NewUnaryHandler(unary, func(_ context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		ran.Store(unary, true)
		return connect.NewResponse(r.Msg), nil
	}, opts...))
	mux.Handle(stream, connect.NewServerStreamHandler(stream, func(_ context.Context, r *connect.Request[wrapperspb.StringValue], s *connect.ServerStream[wrapperspb.StringValue]) error {
		ran.Store(stream, true)
		return s.Send(r.Msg)
	}, opts...))
	mux.Handle(badTime, connect.NewUnaryHandler(badTime, func(context.Context, *connect.Request[emptypb.Empty]) (*connect.Response[timestamppb.Timestamp], error) {
		return connect.NewResponse(&timestamppb.Timestamp{Seconds: 1 << 60}), nil
	}, opts...))
	const get = "/test.v1.T/Get" // no side effects: Connect GET allowed
	mux.Handle(get, connect.NewUnaryHandler(get, func(_ context.Context, r *connect.Request[structpb.Struct]) (*connect.Response[structpb.Struct], error) {
		ran.Store(get, true)
		return connect.NewResponse(r.Msg), nil
	}, append(opts, connect.WithIdempotency(connect.IdempotencyNoSideEffects))...))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	post := func(path, contentType string, body []byte) (int, http.Header, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b)
	}
	want := `{"code":"invalid_argument","message":"malformed request body"}`
	for name, tc := range map[string]struct {
		ct   string
		body []byte
	}{
		"json syntax":     {"application/json", []byte(`{"fields": `)},
		"json type":       {"application/json", []byte(`"a string"`)},
		"json empty body": {"application/json", nil},
		"proto wire":      {"application/proto", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	} {
		code, h, body := post(unary, tc.ct, tc.body)
		if code != http.StatusBadRequest || body != want {
			t.Errorf("unary %s: %d %s, want 400 %s", name, code, body, want)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("unary %s: no nosniff", name)
		}
	}
	// gRPC: the error is in the trailers.
	client := connect.NewClient[structpb.Struct, structpb.Struct](srv.Client(), srv.URL+unary, connect.WithGRPCWeb(), connect.WithCodec(rawCodec{}))
	_, err := client.CallUnary(t.Context(), connect.NewRequest(&structpb.Struct{}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || ce.Message() != "malformed request body" {
		t.Errorf("grpc-web garbage: %v", err)
	}
	// Connect streaming: the end-of-stream message carries the error.
	frame := func(b []byte) []byte {
		return append([]byte{0, 0, 0, 0, byte(len(b))}, b...)
	}
	_, _, body := post(stream, "application/connect+json", frame([]byte(`{"value": 5}`)))
	if !strings.Contains(body, `"code":"invalid_argument"`) || !strings.Contains(body, `"message":"malformed request body"`) {
		t.Errorf("stream garbage: %q", body)
	}
	// Connect GET: the message in the query, JSON or base64.
	for _, q := range []string{"?encoding=json&message=%7B", "?encoding=json&message=!!!&base64=1", "?encoding=proto&message=_w&base64=1"} {
		res, err := srv.Client().Get(srv.URL + get + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || string(b) != want {
			t.Errorf("GET %s: %d %s, want 400 %s", q, res.StatusCode, b, want)
		}
	}
	if _, ok := ran.Load(get); ok {
		t.Error("the GET handler ran on a malformed message")
	}
	if _, ok := ran.Load(unary); ok {
		t.Error("the unary handler ran on a malformed body")
	}
	if _, ok := ran.Load(stream); ok {
		t.Error("the stream handler ran on a malformed body")
	}
	// A valid body still works on both codecs.
	if code, _, body := post(unary, "application/json", []byte(`{"a": 1}`)); code != http.StatusOK || body != `{"a":1}` {
		t.Errorf("valid json: %d %s", code, body)
	}
	// An unencodable response: internal, the encoder's text only in the log.
	code, _, body := post(badTime, "application/json", []byte(`{}`))
	if code != http.StatusInternalServerError || strings.Contains(body, "Timestamp") || strings.Contains(body, "range") {
		t.Errorf("unencodable response: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "Timestamp") {
		t.Errorf("unencodable response not logged: %s", logs.String())
	}
}

// rawCodec sends garbage whatever the message.
type rawCodec struct{}

func (rawCodec) Name() string                    { return "proto" }
func (rawCodec) Marshal(any) ([]byte, error)     { return []byte{0xff, 0xff, 0xff}, nil }
func (rawCodec) Unmarshal(b []byte, m any) error { return errors.New("unused") }

// validateTags returns every tag name used in the validate struct tags
// of the module's Go files, with one file using it. (The server's config
// file structs use `rule` tags, whose messages are for operators:
// server.describeRule, covered by TestConfigErrors.)
func validateTags(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Join("..", "..")
	tagRE := regexp.MustCompile("validate:\"([^\"]*)\"")
	tags := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "gen" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range tagRE.FindAllStringSubmatch(string(src), -1) {
			for _, part := range strings.Split(m[1], ",") {
				name, _, _ := strings.Cut(part, "=")
				if name != "" {
					tags[name] = path
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// Every validation tag used anywhere in the code base has a message
// written for the client: no tag names, no fallback text.
func TestEveryValidateTagHasAMessage(t *testing.T) {
	t.Parallel()
	tags := validateTags(t)
	for _, must := range []string{"required", "maxbytes", "excludesall", "alphanum", "startswith", "gte", "lte", "oneof", "text", "printascii"} {
		if _, ok := tags[must]; !ok {
			t.Errorf("tag %s not found in the code base: is the walk broken?", must)
		}
	}
	structural := map[string]bool{"omitempty": true, "dive": true, "keys": true, "endkeys": true}
	english := map[string]bool{"required": true, "min": true, "max": true, "text": true}
	kinds := []reflect.Kind{reflect.String, reflect.Slice, reflect.Map, reflect.Int64, reflect.Int32}
	for tag, file := range tags {
		if structural[tag] {
			continue
		}
		for _, k := range kinds {
			msg, ok := describeTag(tag, "/ x", k)
			if !ok {
				t.Errorf("tag %q (used in %s) has no message for %v", tag, file, k)
				continue
			}
			if (!english[tag] && strings.Contains(msg, tag)) || strings.Contains(msg, "(") || msg == "" {
				t.Errorf("tag %q: message %q is not written for a client", tag, msg)
			}
		}
	}
}
