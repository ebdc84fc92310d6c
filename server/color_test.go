package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

func permsOf(t *testing.T, m *syncv1.SubscribeResponse) *colorv1.Permissions {
	t.Helper()
	p := &colorv1.Permissions{}
	if err := m.GetRecord().GetRecord().GetPayload().UnmarshalTo(p); err != nil {
		t.Fatalf("permissions payload of %v: %v", m, err)
	}
	return p
}

// The deepstream dynamic-permissions story: the admin grants a color, the
// user's own stream and capability stream update live, the server enforces
// the same rule.
func TestColorStory(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	bob := login(t, app.url, "bob")
	admin := login(t, app.url, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	setColor := func(c *client, color colorv1.Color) error {
		_, err := c.color.SetColor(ctx, connect.NewRequest(&colorv1.SetColorRequest{Color: color}))
		return err
	}
	grant := func(user string, color colorv1.Color, allowed bool) {
		t.Helper()
		if _, err := admin.color.SetPermission(ctx, connect.NewRequest(&colorv1.SetPermissionRequest{UserId: user, Color: color, Allowed: allowed})); err != nil {
			t.Fatalf("set permission: %v", err)
		}
	}

	perms := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "permissions/alice"}}})
	perms.untilSynced(t)
	colors := bob.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "global-color"}}})
	colors.untilSynced(t)

	// The capability stream answers "may alice SetColor(red)?" live.
	capCtx, capCancel := context.WithCancel(ctx)
	defer capCancel()
	caps, err := alice.access.Watch(capCtx, connect.NewRequest(&accessv1.WatchRequest{Questions: []*accessv1.Question{
		{Procedure: colorv1connect.ColorServiceSetColorProcedure, Params: map[string]string{"color": "red"}},
		{Procedure: colorv1connect.ColorServiceSetColorProcedure, Params: map[string]string{"color": "green"}},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	answers := make(chan *accessv1.WatchResponse, 100)
	go func() {
		defer close(answers)
		for caps.Receive() {
			if len(caps.Msg().GetAnswers()) > 0 {
				answers <- caps.Msg()
			}
		}
	}()
	nextAnswer := func() *accessv1.WatchResponse {
		t.Helper()
		select {
		case a := <-answers:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("no capability update")
			return nil
		}
	}
	first := nextAnswer()
	if len(first.GetAnswers()) != 2 || first.GetAnswers()[0].GetAllowed() || first.GetAnswers()[0].GetRule() != "color-permission" {
		t.Fatalf("initial capabilities = %v, want red refused by color-permission", first)
	}

	// Without permission the server refuses, and nothing is written.
	if err := setColor(alice, colorv1.Color_COLOR_RED); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("set red without permission: %v", err)
	}
	// Only admins grant.
	if _, err := alice.color.SetPermission(ctx, connect.NewRequest(&colorv1.SetPermissionRequest{UserId: "alice", Color: colorv1.Color_COLOR_RED, Allowed: true})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("self-grant: %v", err)
	}

	grant("alice", colorv1.Color_COLOR_RED, true)
	if p := permsOf(t, perms.next(t, 10*time.Second)); !p.GetRed() || p.GetGreen() {
		t.Fatalf("alice's permissions stream = %v, want red only", p)
	}
	if a := nextAnswer(); len(a.GetAnswers()) != 1 || a.GetIndex()[0] != 0 || !a.GetAnswers()[0].GetAllowed() {
		t.Fatalf("capability after grant = %v, want red allowed", a)
	}
	if err := setColor(alice, colorv1.Color_COLOR_RED); err != nil {
		t.Fatalf("set red with permission: %v", err)
	}
	gc := &colorv1.GlobalColor{}
	if err := colors.next(t, 10*time.Second).GetRecord().GetRecord().GetPayload().UnmarshalTo(gc); err != nil || gc.GetColor() != colorv1.Color_COLOR_RED {
		t.Fatalf("bob sees %v (%v), want red", gc, err)
	}

	grant("alice", colorv1.Color_COLOR_RED, false)
	if p := permsOf(t, perms.next(t, 10*time.Second)); p.GetRed() {
		t.Fatalf("permissions after revoke = %v", p)
	}
	if a := nextAnswer(); a.GetAnswers()[0].GetAllowed() {
		t.Fatalf("capability after revoke = %v, want refused", a)
	}
	if err := setColor(alice, colorv1.Color_COLOR_RED); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("set red after revoke: %v", err)
	}
	for _, bad := range []colorv1.Color{colorv1.Color_COLOR_UNSPECIFIED, colorv1.Color(42)} {
		err := setColor(alice, bad)
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("color %v: %v, want invalid_argument", bad, err)
		}
		if f := fieldViolations(t, err); len(f) != 1 || f[0] != "color" {
			t.Fatalf("color %v: violations %v", bad, f)
		}
	}

	// permissions/<user> is readable by the user and admins only, and its
	// existence does not leak.
	stream, err := bob.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "permissions/alice"}}}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if codeOf(err) != connect.CodeNotFound {
		t.Fatalf("bob reading alice's permissions: %v, want not_found", err)
	}
	got, err := admin.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: []string{"permissions/alice", "permissions/nobody"}}))
	if err != nil || len(got.Msg.GetRecords()) != 1 || len(got.Msg.GetMissingKeys()) != 1 {
		t.Fatalf("admin get = %v, %v", got, err)
	}
	hidden, err := bob.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: []string{"permissions/alice"}}))
	if err != nil || len(hidden.Msg.GetRecords()) != 0 || hidden.Msg.GetMissingKeys()[0] != "permissions/alice" {
		t.Fatalf("bob get = %v, %v", hidden, err)
	}
}
