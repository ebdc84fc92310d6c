package kit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/authz"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

const docProc = "/test.DocService/Write"

// docSteps are Steps on a fresh database with one policy: a doc/<owner>
// record may be written by its owner only. The owner is a parameter only
// the policy's resolver knows (from the key), so the policy admits the
// owner only if Write resolved the resource through it.
func docSteps(t *testing.T) Steps {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	policies, err := authz.NewTable(nil, authz.Policy{
		Procedure: docProc, Action: "doc.write",
		Check: func(_ context.Context, p *authz.Principal, r authz.Resource, _ authz.Facts) error {
			if r.Params["owner"] != p.ID {
				return authz.Deny("owner", "only the owner writes "+r.Key)
			}
			return nil
		},
		Resolve: func(_ *authz.Principal, q authz.Question) authz.Resource {
			return authz.Resource{Key: q.Key, Scope: "docs", Params: map[string]string{"owner": strings.TrimPrefix(q.Key, "doc/")}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return Steps{Store: engine.NewStore(pool, engine.StoreConfig{}), Policies: policies, Valid: edge.NewValidator()}
}

type docCmd struct {
	Name string `field:"name" validate:"required,max=10"`
}

func as(id string) context.Context {
	return authz.WithPrincipal(context.Background(), &authz.Principal{ID: id})
}

// TestWriteSteps: Write validates, needs a caller, resolves the resource
// through the policy, checks it in the transaction and then runs the body.
func TestWriteSteps(t *testing.T) {
	t.Parallel()
	s := docSteps(t)
	ran := 0
	body := func(ctx context.Context, c Call) error {
		ran++
		if c.Principal == nil || c.Resource.Scope != "docs" {
			t.Errorf("body got principal %v, resource %+v", c.Principal, c.Resource)
		}
		_, err := c.Tx.Put(ctx, c.Resource.Key, c.Resource.Scope, &userv1.User{Id: c.Principal.ID})
		return err
	}
	written := func(key string) bool {
		recs, err := s.Store.Records(context.Background(), []string{key})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs) == 1
	}

	// Invalid input: refused with the field named, before anything else.
	_, err := s.Write(as("alice"), docProc, docCmd{Name: "much too long"}, authz.Question{Key: "doc/alice"}, body)
	var ve *edge.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "name") {
		t.Fatalf("invalid input: %v, want a validation error naming the field", err)
	}
	// No caller.
	if _, err := s.Write(context.Background(), docProc, docCmd{Name: "a"}, authz.Question{Key: "doc/alice"}, body); !errors.Is(err, authz.ErrUnauthenticated) {
		t.Fatalf("no principal: %v, want unauthenticated", err)
	}
	// Someone else's record: denied, nothing written.
	if _, err := s.Write(as("bob"), docProc, docCmd{Name: "a"}, authz.Question{Key: "doc/alice"}, body); !errors.Is(err, authz.ErrDenied) {
		t.Fatalf("bob writing alice's doc: %v, want denied", err)
	}
	// A procedure without a policy: default deny.
	if _, err := s.Write(as("alice"), "/test.DocService/Other", nil, authz.Question{Key: "doc/alice"}, body); !errors.Is(err, authz.ErrDenied) {
		t.Fatalf("procedure without a policy: %v, want denied", err)
	}
	if ran != 0 || written("doc/alice") {
		t.Fatalf("body ran %d times, record written %v, before any allowed call", ran, written("doc/alice"))
	}
	// The owner: the resolver's parameter lets the policy admit her.
	changes, err := s.Write(as("alice"), docProc, docCmd{Name: "a"}, authz.Question{Key: "doc/alice"}, body)
	if err != nil || len(changes) != 1 || changes[0].Key != "doc/alice" || ran != 1 {
		t.Fatalf("owner: %v, %v (body ran %d times), want one change", changes, err, ran)
	}
	// The body's error rolls the transaction back, unchanged.
	boom := connect.NewError(connect.CodeAborted, errors.New("boom"))
	if _, err := s.Write(as("alice"), docProc, nil, authz.Question{Key: "doc/alice"}, func(ctx context.Context, c Call) error {
		if err := body(ctx, c); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("body error: %v, want it unchanged", err)
	}
	recs, err := s.Store.Records(context.Background(), []string{"doc/alice"})
	if err != nil || len(recs) != 1 || recs[0].Version != 1 {
		t.Fatalf("after a failed body: %+v, %v; want version 1 only", recs, err)
	}
}
