package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
)

// TestCapabilityAgreesWithEnforcement: handlers written with kit.Steps
// resolve their resource through the policy's own resolver, so what
// AccessService answers before a call is what the call then does. (The
// UserService's profile calls used to build their resource by hand, and
// AccessService answered "denied" for a call that succeeded.)
func TestCapabilityAgreesWithEnforcement(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	questions := []*accessv1.Question{
		{Procedure: userv1connect.UserServiceSetDisplayNameProcedure},
		{Procedure: userv1connect.UserServiceSetAvatarUrlProcedure},
		{Procedure: colorv1connect.ColorServiceSetColorProcedure, Params: map[string]string{"color": "red"}},
	}
	ans, err := alice.access.Check(ctx, connect.NewRequest(&accessv1.CheckRequest{Questions: questions}))
	if err != nil {
		t.Fatal(err)
	}
	_, errName := alice.user.SetDisplayName(ctx, connect.NewRequest(&userv1.SetDisplayNameRequest{DisplayName: "Alice"}))
	_, errAvatar := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/a.png"}))
	_, errColor := alice.color.SetColor(ctx, connect.NewRequest(&colorv1.SetColorRequest{Color: colorv1.Color_COLOR_RED}))
	for i, err := range []error{errName, errAvatar, errColor} {
		a := ans.Msg.GetAnswers()[i]
		if a.GetAllowed() != (err == nil) {
			t.Errorf("%s: AccessService answered allowed=%v (%s %s), the call returned %v",
				questions[i].GetProcedure(), a.GetAllowed(), a.GetRule(), a.GetReason(), err)
		}
	}
}
