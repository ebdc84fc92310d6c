package services

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/access/v1/accessv1connect"
	"github.com/sluicehq/sluice/gen/sluice/admin/v1/adminv1connect"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/admin"
	"github.com/sluicehq/sluice/services/app/channel"
	"github.com/sluicehq/sluice/services/app/color"
	"github.com/sluicehq/sluice/services/app/membership"
	"github.com/sluicehq/sluice/services/app/message"
	"github.com/sluicehq/sluice/services/app/notify"
	"github.com/sluicehq/sluice/services/app/org"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/services/syncsvc"
	"github.com/sluicehq/sluice/services/user"
)

// Framework returns the services every Sluice server runs, whatever the
// app: login and sessions (auth), user profiles (user), record streams
// (sync), capability questions (access) and operator tools (admin).
func Framework() []kit.Module {
	return []kit.Module{
		{
			Name: authv1connect.AuthServiceName,
			Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
				return authv1connect.NewAuthServiceHandler(auth.NewService(d.Login, d.Sessions, d.Policies, d.Valid, d.Auth), opts...)
			},
			Policies: auth.Policies(),
		},
		{
			Name: userv1connect.UserServiceName,
			Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
				return userv1connect.NewUserServiceHandler(user.NewService(d.Steps()), opts...)
			},
			Policies: user.Policies(),
			// A profile is its own scope; who may read it is the app's
			// rule (the reference app: the user and people sharing an
			// organization).
			SelfScoped: []string{"user"},
		},
		{
			Name: syncv1connect.SyncServiceName,
			Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
				svc := syncsvc.NewService(d.Store, d.Streamer, d.Streams, d.Policies, d.Reads, d.Valid, d.Scopes, d.Loader, syncsvc.Config{
					Presence:      d.Presence,
					PresenceTypes: d.PresenceTypes,
					Logger:        d.Logger,
					Traced:        d.Traced,
				})
				return syncsvc.NewHandler(svc, opts...)
			},
			Policies:  syncsvc.Policies(),
			NeedsNATS: true,
		},
		{
			Name: accessv1connect.AccessServiceName,
			Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
				return accessv1connect.NewAccessServiceHandler(access.NewService(d.Policies, d.Reads, d.Loader, d.Streamer, d.Streams, d.Valid), opts...)
			},
			Policies:  access.Policies(),
			NeedsNATS: true,
		},
		{
			Name: adminv1connect.AdminServiceName,
			Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
				return adminv1connect.NewAdminServiceHandler(admin.NewService(d.Sessions, d.Policies, d.Valid), opts...)
			},
			Policies: admin.Policies(),
		},
	}
}

// ReferenceApp returns the modules of the reference chat app and the color
// demo: organizations, channels, messages, their data model and
// notifications, and the global color. An app of its own passes its
// modules in Config.Modules instead.
func ReferenceApp() []kit.Module {
	return []kit.Module{
		org.Module(),
		channel.Module(),
		message.Module(),
		color.Module(),
		membership.Module(),
		notify.Module(),
	}
}
