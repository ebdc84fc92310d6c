// Package syncsvc is the SyncService: record streams and reads. It checks
// read access per target once, then hands the stream to engine.Streamer.
package syncsvc

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/authz"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// Limits of one request.
const (
	MaxTargets = 256
	MaxGetKeys = 100
)

// Config configures the Service. The zero value of each field is a
// documented default.
type Config struct {
	// Presence, when set, tracks who streams which scope of the types in
	// PresenceTypes and tells streams (EphemeralEvent presence.*).
	Presence      *engine.Presence
	PresenceTypes []string
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// Traced sends every event through connect-go's Send, where the
	// tracing interceptor sees it. Otherwise a live event goes to the
	// response as a ready-made envelope (see NewHandler).
	Traced bool
}

// Service implements sluice.sync.v1.SyncService. Its streams live as long
// as streams (auth.Streams) allows: until shutdown or the session ends.
type Service struct {
	store    *engine.Store
	streamer *engine.Streamer
	streams  *auth.Streams
	policies *authz.Table
	reads    *authz.ReadRules
	valid    *edge.Validator
	scopes   *access.Scopes
	facts    *access.Loader
	lister   *Lister
	cfg      Config
}

var _ syncv1connect.SyncServiceHandler = (*Service)(nil)

// NewService returns the SyncService. Keys whose scope scopes knows are
// resolved without a read; others are looked up in the store. Read rules
// consult facts through loader.
func NewService(store *engine.Store, streamer *engine.Streamer, streams *auth.Streams, policies *authz.Table, reads *authz.ReadRules, valid *edge.Validator, scopes *access.Scopes, loader *access.Loader, cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{store: store, streamer: streamer, streams: streams, policies: policies, reads: reads, valid: valid, scopes: scopes, facts: loader,
		lister: NewLister(store, reads, loader), cfg: cfg}
	return s
}

// Policies returns the policy of every SyncService procedure. Per-target
// access is decided by the read rules.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: syncv1connect.SyncServiceSubscribeProcedure, Action: "sync.subscribe",
			Description: "any authenticated principal; each target by its scope's read rule (denied targets: not_found)"},
		{Procedure: syncv1connect.SyncServiceGetProcedure, Action: "sync.get",
			Description: "any authenticated principal; unreadable keys are reported missing"},
		{Procedure: syncv1connect.SyncServiceListProcedure, Action: "sync.list",
			Description: "any authenticated principal; the scope by its read rule (denied: not_found)"},
	}
}

type subscribeCmd struct {
	Records []recordTarget `field:"records" validate:"max=256,dive"`
	Scopes  []scopeTarget  `field:"scopes" validate:"max=256,dive"`
}

type recordTarget struct {
	Key     string `field:"records.key" validate:"required,maxbytes=256,utf8,nocontrol"`
	Version int64  `field:"records.version" validate:"gte=0"`
}

type scopeTarget struct {
	Scope    string `field:"scopes.scope" validate:"required,maxbytes=256,utf8,nocontrol"`
	AfterSeq int64  `field:"scopes.after_seq" validate:"gte=0"`
	Limit    int32  `field:"scopes.limit" validate:"gte=0,lte=1000"`
}

// decodeSubscribe turns a request into a validated command.
func decodeSubscribe(ctx context.Context, v *edge.Validator, msg *syncv1.SubscribeRequest) (subscribeCmd, error) {
	cmd := subscribeCmd{}
	for _, r := range msg.GetRecords() {
		cmd.Records = append(cmd.Records, recordTarget{Key: r.GetKey(), Version: r.GetVersion()})
	}
	for _, sc := range msg.GetScopes() {
		cmd.Scopes = append(cmd.Scopes, scopeTarget{Scope: sc.GetScope(), AfterSeq: sc.GetAfterSeq(), Limit: sc.GetLimit()})
	}
	if err := v.Validate(ctx, cmd); err != nil {
		return cmd, err
	}
	if len(cmd.Records)+len(cmd.Scopes) == 0 {
		return cmd, edge.Invalid("records", "name at least one record or scope")
	}
	if len(cmd.Records)+len(cmd.Scopes) > MaxTargets {
		return cmd, edge.Invalid("records", "at most 256 targets in all")
	}
	return cmd, nil
}

// Subscribe streams the requested targets; see the proto for the contract.
func (s *Service) Subscribe(ctx context.Context, req *connect.Request[syncv1.SubscribeRequest], stream *connect.ServerStream[syncv1.SubscribeResponse]) error {
	cmd, err := decodeSubscribe(ctx, s.valid, req.Msg)
	if err != nil {
		return err
	}
	if err := s.policies.Authorize(ctx, syncv1connect.SyncServiceSubscribeProcedure, authz.Resource{}); err != nil {
		return err
	}
	var t engine.Targets
	for _, r := range cmd.Records {
		scope, err := s.scopeOf(ctx, r.Key)
		if err != nil {
			return err
		}
		deps, guard, err := s.readAccess(ctx, scope)
		if err != nil {
			return err
		}
		t.Records = append(t.Records, engine.RecordTarget{Key: r.Key, Scope: scope, Version: r.Version, Deps: deps, Guard: guard})
	}
	for _, sc := range cmd.Scopes {
		deps, guard, err := s.readAccess(ctx, sc.Scope)
		if err != nil {
			return err
		}
		t.Scopes = append(t.Scopes, engine.ScopeTarget{Scope: sc.Scope, AfterSeq: sc.AfterSeq, Limit: int(sc.Limit), Deps: deps, Guard: guard})
	}
	return s.run(ctx, t, stream)
}

// readAccess checks the read rule of scope once and returns what keeps
// access live on the stream (see access.Loader.ReadGuard).
func (s *Service) readAccess(ctx context.Context, scope string) ([]engine.Dep, engine.Guard, error) {
	return s.facts.ReadGuard(ctx, s.reads, scope)
}

// run streams t until the client goes, the session ends or the server
// shuts down.
func (s *Service) run(ctx context.Context, t engine.Targets, stream *connect.ServerStream[syncv1.SubscribeResponse]) error {
	p := authz.PrincipalFrom(ctx)
	ctx, release, err := s.streams.Hold(ctx, len(t.Records)+len(t.Scopes))
	if err != nil {
		return err
	}
	defer release()
	out := newSink(ctx, stream.Conn())
	// Whatever is still held goes out before connect-go ends the stream.
	defer out.Flush() //nolint:errcheck // Flush only releases the gate
	var snk engine.Sink = out
	if here := s.presenceScopes(t); len(here) > 0 && !p.Service {
		for _, scope := range here {
			leave, err := s.cfg.Presence.Enter(ctx, scope, p.ID)
			if err != nil {
				return err
			}
			defer leave()
		}
		snk = &presenceSink{Sink: out, ctx: ctx, svc: s, scopes: here}
	}
	err = s.streamer.Stream(ctx, t, snk)
	var tooLarge *engine.SnapshotTooLargeError
	if errors.As(err, &tooLarge) {
		return edge.Invalid("scopes.limit", tooLarge.Error())
	}
	return auth.Ended(ctx, err)
}

// scopeOf returns the scope of key: the key itself for self-scoped types,
// else the stored record's scope. A key of another type that does not
// exist is NotFound.
func (s *Service) scopeOf(ctx context.Context, key string) (string, error) {
	if scope, ok := s.scopes.Of(key); ok {
		return scope, nil
	}
	scope, err := s.store.ScopeOf(ctx, key)
	if err != nil {
		return "", err
	}
	return scope, nil
}

type getCmd struct {
	Keys []string `field:"keys" validate:"required,min=1,max=100,dive,required,maxbytes=256,utf8,nocontrol"`
}

// decodeGet turns a request into a validated command.
func decodeGet(ctx context.Context, v *edge.Validator, msg *syncv1.GetRequest) (getCmd, error) {
	cmd := getCmd{Keys: msg.GetKeys()}
	return cmd, v.Validate(ctx, cmd)
}

// Get returns the current state of up to 100 records.
func (s *Service) Get(ctx context.Context, req *connect.Request[syncv1.GetRequest]) (*connect.Response[syncv1.GetResponse], error) {
	cmd, err := decodeGet(ctx, s.valid, req.Msg)
	if err != nil {
		return nil, err
	}
	if err := s.policies.Authorize(ctx, syncv1connect.SyncServiceGetProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	recs, err := s.store.Records(ctx, cmd.Keys)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]*engine.Change, len(recs))
	for i := range recs {
		byKey[recs[i].Key] = &recs[i]
	}
	res := &syncv1.GetResponse{}
	for _, key := range cmd.Keys {
		c := byKey[key]
		if c == nil || c.Deleted || s.reads.CanRead(ctx, c.Scope, s.facts.Facts()) != nil {
			res.MissingKeys = append(res.MissingKeys, key)
			continue
		}
		rec, err := c.Record()
		if err != nil {
			return nil, err
		}
		res.Records = append(res.Records, rec)
	}
	return connect.NewResponse(res), nil
}

// presenceScopes returns the scope targets of t whose type has presence.
func (s *Service) presenceScopes(t engine.Targets) []string {
	if s.cfg.Presence == nil {
		return nil
	}
	var out []string
	for _, sc := range t.Scopes {
		typ, _ := authz.SplitScope(sc.Scope)
		if slices.Contains(s.cfg.PresenceTypes, typ) {
			out = append(out, sc.Scope)
		}
	}
	return out
}

// presenceSink sends, right after the SyncedEvent, who is online on each
// presence scope; joins and leaves then arrive live.
type presenceSink struct {
	engine.Sink
	ctx    context.Context
	svc    *Service
	scopes []string
}

func (ps *presenceSink) Send(e *engine.Event) error {
	if err := ps.Sink.Send(e); err != nil || e.Msg.GetSynced() == nil {
		return err
	}
	for _, scope := range ps.scopes {
		users, err := ps.svc.cfg.Presence.Online(ps.ctx, scope)
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := ps.Sink.Send(engine.NewEvent(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Ephemeral{Ephemeral: &syncv1.EphemeralEvent{
				Scope: scope, Kind: engine.PresenceHere, From: u, At: timestamppb.Now(),
			}}})); err != nil {
				return err
			}
		}
	}
	return nil
}

type listCmd struct {
	Scope string `field:"scope" validate:"required,maxbytes=256,utf8,nocontrol"`
	Paging
}

// List returns a page of a scope's records, newest first, through the
// Lister every typed list shares.
func (s *Service) List(ctx context.Context, req *connect.Request[syncv1.ListRequest]) (*connect.Response[syncv1.ListResponse], error) {
	cmd := listCmd{Scope: req.Msg.GetScope(), Paging: Paging{BeforeSeq: req.Msg.GetBeforeSeq(), Limit: req.Msg.GetLimit()}}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	if err := s.policies.Authorize(ctx, syncv1connect.SyncServiceListProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	res, err := s.lister.Page(ctx, cmd.Scope, "", cmd.Paging)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}
