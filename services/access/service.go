package access

import (
	"context"
	"errors"
	"maps"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	"github.com/sluicehq/sluice/gen/sluice/access/v1/accessv1connect"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// MaxQuestions bounds one Check or Watch request.
const MaxQuestions = 100

// Service implements sluice.access.v1.AccessService.
type Service struct {
	policies *authz.Table
	reads    *authz.ReadRules
	loader   *Loader
	streamer *engine.Streamer
	streams  *auth.Streams
	valid    *edge.Validator
}

var _ accessv1connect.AccessServiceHandler = (*Service)(nil)

// NewService returns the AccessService. Watch streams live as long as
// streams allows: until shutdown or the session ends.
func NewService(policies *authz.Table, reads *authz.ReadRules, loader *Loader, streamer *engine.Streamer, streams *auth.Streams, valid *edge.Validator) *Service {
	return &Service{policies: policies, reads: reads, loader: loader, streamer: streamer, streams: streams, valid: valid}
}

// Policies returns the policy of every AccessService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: accessv1connect.AccessServiceCheckProcedure, Action: "access.check",
			Description: "any authenticated principal, about itself"},
		{Procedure: accessv1connect.AccessServiceWatchProcedure, Action: "access.watch",
			Description: "any authenticated principal, about itself"},
	}
}

type questionCmd struct {
	Procedure string            `field:"questions.procedure" validate:"required,maxbytes=256,utf8,nocontrol"`
	Key       string            `field:"questions.key" validate:"maxbytes=256,utf8,nocontrol"`
	Params    map[string]string `field:"questions.params" validate:"max=16,dive,keys,maxbytes=64,utf8,nocontrol,endkeys,maxbytes=256,utf8,nocontrol"`
}

type questionsCmd struct {
	Questions []questionCmd `field:"questions" validate:"required,min=1,max=100,dive"`
}

// decodeQuestions turns the request's questions into a validated command.
func decodeQuestions(ctx context.Context, v *edge.Validator, qs []*accessv1.Question) (questionsCmd, error) {
	cmd := questionsCmd{}
	for _, q := range qs {
		cmd.Questions = append(cmd.Questions, questionCmd{Procedure: q.GetProcedure(), Key: q.GetKey(), Params: q.GetParams()})
	}
	return cmd, v.Validate(ctx, cmd)
}

// Check answers every question for the caller.
func (s *Service) Check(ctx context.Context, req *connect.Request[accessv1.CheckRequest]) (*connect.Response[accessv1.CheckResponse], error) {
	cmd, err := decodeQuestions(ctx, s.valid, req.Msg.GetQuestions())
	if err != nil {
		return nil, err
	}
	if err := s.policies.Authorize(ctx, accessv1connect.AccessServiceCheckProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	answers, _, err := s.answer(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accessv1.CheckResponse{Answers: answers}), nil
}

// Watch answers every question, then each answer again when it changes.
func (s *Service) Watch(ctx context.Context, req *connect.Request[accessv1.WatchRequest], stream *connect.ServerStream[accessv1.WatchResponse]) error {
	cmd, err := decodeQuestions(ctx, s.valid, req.Msg.GetQuestions())
	if err != nil {
		return err
	}
	if err := s.policies.Authorize(ctx, accessv1connect.AccessServiceWatchProcedure, authz.Resource{}); err != nil {
		return err
	}
	ctx, release, err := s.streams.Hold(ctx, len(cmd.Questions))
	if err != nil {
		return err
	}
	defer release()
	var last []*accessv1.Answer
	eval := func(ctx context.Context) ([]engine.Dep, error) {
		answers, deps, err := s.answer(ctx, cmd)
		if err != nil {
			return nil, err
		}
		res := &accessv1.WatchResponse{}
		for i, a := range answers {
			if last == nil || last[i].GetAllowed() != a.GetAllowed() || last[i].GetReason() != a.GetReason() {
				res.Answers = append(res.Answers, a)
				res.Index = append(res.Index, int32(i))
			}
		}
		first := last == nil
		last = answers
		if first || len(res.Answers) > 0 {
			if err := stream.Send(res); err != nil {
				return nil, err
			}
		}
		return deps, nil
	}
	heartbeat := func() error { return stream.Send(&accessv1.WatchResponse{}) }
	return auth.Ended(ctx, s.streamer.Watch(ctx, eval, heartbeat))
}

// answer decides every question with one facts recorder and returns the
// records the decisions read.
func (s *Service) answer(ctx context.Context, cmd questionsCmd) ([]*accessv1.Answer, []engine.Dep, error) {
	p := authz.PrincipalFrom(ctx)
	facts := s.loader.Facts()
	answers := make([]*accessv1.Answer, len(cmd.Questions))
	for i, q := range cmd.Questions {
		a := &accessv1.Answer{Question: &accessv1.Question{Procedure: q.Procedure, Key: q.Key, Params: maps.Clone(q.Params)}}
		var err error
		if q.Procedure == syncv1connect.SyncServiceSubscribeProcedure {
			err = s.reads.CanRead(ctx, q.Key, facts)
		} else if r, ok := s.policies.ResourceFor(p, authz.Question{Procedure: q.Procedure, Key: q.Key, Params: q.Params}); ok {
			err = s.policies.Decide(ctx, q.Procedure, r, facts)
		} else {
			err = authz.Deny("default-deny", "no such procedure")
		}
		var d *authz.Denial
		switch {
		case err == nil:
			a.Allowed = true
		case errors.As(err, &d):
			a.Rule, a.Reason = d.Rule, d.Reason
			if d.Hide {
				a.Rule, a.Reason = "", "not found"
			}
		default:
			return nil, nil, err
		}
		answers[i] = a
	}
	return answers, facts.Deps(), nil
}
