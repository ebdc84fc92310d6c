package services

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	"github.com/sluicehq/sluice/services/edge"
)

// rateClassOf lists the procedures whose rate class is not found by the
// rules of RateClasses.
var rateClassOf = map[string]edge.RateClass{
	messagev1connect.MessageServiceSendTypingProcedure:    edge.RateTyping,
	messagev1connect.MessageServicePostMessageProcedure:   edge.RateMessages,
	messagev1connect.MessageServiceEditMessageProcedure:   edge.RateMessages,
	messagev1connect.MessageServiceDeleteMessageProcedure: edge.RateMessages,
}

// RateClasses returns the rate class of every procedure declared in the
// protos linked into this binary:
//
//   - read-only procedures (idempotency_level NO_SIDE_EFFECTS) and streams
//     (bounded by the stream limits instead) are not limited;
//   - typing signals and message writes have classes of their own;
//   - procedures named Create… or Invite… (organizations, teams, channels,
//     invitations: things a person does a few times a day) are "create";
//   - every other procedure with side effects is "writes".
//
// A new procedure is thus limited from the start, as a write, unless its
// proto says it has no side effects.
func RateClasses() map[string]edge.RateClass {
	out := map[string]edge.RateClass{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "sluice.") {
			return true
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				proc := "/" + string(sd.FullName()) + "/" + string(md.Name())
				out[proc] = rateClass(proc, md)
			}
		}
		return true
	})
	return out
}

func rateClass(proc string, md protoreflect.MethodDescriptor) edge.RateClass {
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	if opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS || md.IsStreamingServer() || md.IsStreamingClient() {
		return edge.RateNone
	}
	if c, ok := rateClassOf[proc]; ok {
		return c
	}
	if name := string(md.Name()); strings.HasPrefix(name, "Create") || strings.HasPrefix(name, "Invite") {
		return edge.RateCreate
	}
	return edge.RateWrites
}

// newRateLimiter returns the rate limiter of cfg over RateClasses.
func newRateLimiter(cfg edge.RateLimits) *edge.RateLimiter {
	classes := RateClasses()
	return edge.NewRateLimiter(cfg, func(procedure string) edge.RateClass { return classes[procedure] })
}
