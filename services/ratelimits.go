package services

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
)

// RateClasses returns the rate class of every procedure declared in the
// protos linked into this binary:
//
//   - read-only procedures (idempotency_level NO_SIDE_EFFECTS) and streams
//     (bounded by the stream limits instead) are not limited;
//   - a module names the class of its procedures that need another one
//     (kit.Module.RateClasses: the chat's typing signals and messages);
//   - procedures named Create… or Invite… (organizations, teams, channels,
//     invitations: things a person does a few times a day) are "create";
//   - every other procedure with side effects is "writes".
//
// A new procedure is thus limited from the start, as a write, unless its
// proto says it has no side effects.
func RateClasses(modules []kit.Module) map[string]edge.RateClass {
	named := map[string]edge.RateClass{}
	for _, m := range modules {
		for proc, c := range m.RateClasses {
			named[proc] = c
		}
	}
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
				c, ok := named[proc]
				out[proc] = rateClass(md, c, ok)
			}
		}
		return true
	})
	return out
}

func rateClass(md protoreflect.MethodDescriptor, named edge.RateClass, isNamed bool) edge.RateClass {
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	if opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS || md.IsStreamingServer() || md.IsStreamingClient() {
		return edge.RateNone
	}
	if isNamed {
		return named
	}
	if name := string(md.Name()); strings.HasPrefix(name, "Create") || strings.HasPrefix(name, "Invite") {
		return edge.RateCreate
	}
	return edge.RateWrites
}

// newRateLimiter returns the rate limiter of cfg over the RateClasses of
// modules.
func newRateLimiter(cfg edge.RateLimits, modules []kit.Module) *edge.RateLimiter {
	classes := RateClasses(modules)
	return edge.NewRateLimiter(cfg, func(procedure string) edge.RateClass { return classes[procedure] })
}
