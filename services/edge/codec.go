package edge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// connect-go decodes a unary request before any interceptor runs and, when
// the body does not decode, answers with the decoder's own text (Go type
// names, positions). The edge's codecs therefore never fail a decode:
// they reset the message and mark it malformed, and decodeCheck, the
// innermost interceptor, refuses a marked message with ErrMalformed, which
// ToConnect turns into invalid_argument "malformed request body". The
// mark is an unknown field no schema uses.
var malformedMark = protowire.AppendBytes(
	protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.BytesType),
	[]byte("sluice: malformed request body"))

// markMalformed empties msg and marks it as a body that did not decode.
func markMalformed(msg proto.Message) {
	proto.Reset(msg)
	msg.ProtoReflect().SetUnknown(malformedMark)
}

// isMalformed reports whether msg was marked by markMalformed.
func isMalformed(msg any) bool {
	m, ok := msg.(proto.Message)
	return ok && m != nil && bytes.Equal(m.ProtoReflect().GetUnknown(), malformedMark)
}

// errEncode is what connect-go wraps when a response does not encode; the
// cause is logged by the codec.
var errEncode = errors.New(internalMessage)

// protoCodec is connect-go's binary protobuf codec ("proto"), except for
// how it fails (see malformedMark).
type protoCodec struct{ log *slog.Logger }

// Name implements connect.Codec.
func (protoCodec) Name() string { return "proto" }

// Marshal implements connect.Codec.
func (c protoCodec) Marshal(msg any) ([]byte, error) {
	return c.MarshalAppend(nil, msg)
}

// MarshalAppend lets connect-go reuse buffers.
func (c protoCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, encodeFailed(c.log, msg, errors.New("not a protobuf message"))
	}
	b, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return nil, encodeFailed(c.log, msg, err)
	}
	return b, nil
}

// MarshalStable is used for GET requests' cache keys.
func (c protoCodec) MarshalStable(msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, encodeFailed(c.log, msg, errors.New("not a protobuf message"))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, encodeFailed(c.log, msg, err)
	}
	return b, nil
}

// IsBinary implements connect-go's stable codec.
func (protoCodec) IsBinary() bool { return true }

// Unmarshal implements connect.Codec: it never fails on the body.
func (protoCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("decode %T: not a protobuf message", msg)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		markMalformed(m)
	}
	return nil
}

// jsonCodec is connect-go's protobuf JSON codec ("json" and "json;
// charset=utf-8"): unknown fields are ignored, and it fails like protoCodec.
type jsonCodec struct {
	name string
	log  *slog.Logger
}

// Name implements connect.Codec.
func (c jsonCodec) Name() string { return c.name }

// Marshal implements connect.Codec.
func (c jsonCodec) Marshal(msg any) ([]byte, error) {
	return c.MarshalAppend(nil, msg)
}

// MarshalAppend lets connect-go reuse buffers.
func (c jsonCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, encodeFailed(c.log, msg, errors.New("not a protobuf message"))
	}
	b, err := protojson.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return nil, encodeFailed(c.log, msg, err)
	}
	return b, nil
}

// MarshalStable is used for GET requests' cache keys.
func (c jsonCodec) MarshalStable(msg any) ([]byte, error) {
	b, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, encodeFailed(c.log, msg, err)
	}
	return out.Bytes(), nil
}

// IsBinary implements connect-go's stable codec.
func (jsonCodec) IsBinary() bool { return false }

// Unmarshal implements connect.Codec: it never fails on the body.
func (jsonCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("decode %T: not a protobuf message", msg)
	}
	if len(data) == 0 {
		markMalformed(m)
		return nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		markMalformed(m)
	}
	return nil
}

// encodeFailed logs a response that cannot be encoded (a server bug: an
// out-of-range timestamp, invalid UTF-8) and returns the error connect-go
// reports, without the encoder's text.
func encodeFailed(log *slog.Logger, msg any, err error) error {
	log.Error("internal error: cannot encode response", "type", fmt.Sprintf("%T", msg), "err", err)
	return errEncode
}

// Codecs returns the edge's codecs (binary protobuf, and JSON under both
// of its names), which HandlerOptions installs in place of connect-go's
// defaults. A service that needs a codec of its own wraps these, so
// requests still fail the edge's way.
func Codecs(log *slog.Logger) []connect.Codec {
	return []connect.Codec{
		protoCodec{log: log},
		jsonCodec{name: "json", log: log},
		jsonCodec{name: "json; charset=utf-8", log: log},
	}
}

// codecs returns the options installing Codecs.
func codecs(log *slog.Logger) []connect.HandlerOption {
	var opts []connect.HandlerOption
	for _, c := range Codecs(log) {
		opts = append(opts, connect.WithCodec(c))
	}
	return opts
}

// decodeCheck refuses request messages the edge's codecs marked
// malformed, before the handler sees them. It runs innermost, so the
// caller was authenticated first and the error is mapped by ToConnect.
type decodeCheck struct{}

func (decodeCheck) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !req.Spec().IsClient && isMalformed(req.Any()) {
			return nil, ErrMalformed
		}
		return next(ctx, req)
	}
}

func (decodeCheck) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (decodeCheck) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, checkedConn{conn})
	}
}

// checkedConn refuses a received message that did not decode.
type checkedConn struct{ connect.StreamingHandlerConn }

func (c checkedConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	if isMalformed(msg) {
		return ErrMalformed
	}
	return nil
}

// checkSize is a request gate that refuses a request whose declared body
// (Content-Length) is over the size limit before connect-go reads it:
// connect-go's own refusal carries its wording ("message size ... is
// larger than configured max ..."). The limit is MaxRequestBytes plus the
// 5-byte envelope of streaming protocols; compressed bodies, and bodies
// without a length, are left to connect-go's limit.
func checkSize(header http.Header) error {
	if header.Get("Content-Encoding") != "" || header.Get("Connect-Content-Encoding") != "" || header.Get("Grpc-Encoding") != "" {
		return nil
	}
	n, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64)
	if err != nil {
		return nil
	}
	limit := int64(MaxRequestBytes)
	if ct := header.Get("Content-Type"); strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+") {
		limit += 5
	}
	if n > limit {
		return clientError(connect.CodeResourceExhausted, errTooLarge)
	}
	return nil
}

// checkRequest is the edge's request gate, run before connect-go reads
// the body: checkSize; then, for Connect GET requests (procedures without
// side effects), a message parameter that claims to be base64 (base64=1)
// but is not, which connect-go would fail while reading it, before any
// codec or interceptor, as unknown with the decoder's text, is refused as
// invalid_argument "malformed request body".
func checkRequest(ctx context.Context, _ connect.Spec, peer connect.Peer, header http.Header) (context.Context, error) {
	if err := checkSize(header); err != nil {
		return ctx, err
	}
	if peer.Query == nil || peer.Query.Get("base64") != "1" {
		return ctx, nil
	}
	msg := peer.Query.Get("message")
	enc := base64.URLEncoding // as connect-go reads it: padded unless the length says otherwise
	if len(msg)%4 != 0 {
		enc = base64.RawURLEncoding
	}
	if _, err := enc.DecodeString(msg); err != nil {
		return ctx, clientError(connect.CodeInvalidArgument, ErrMalformed.Error())
	}
	return ctx, nil
}
