// Package server runs Sluice: it assembles the framework's services
// (services.Framework: auth, user, sync, access, admin) and an app's own
// modules (Config.Modules; nil: the reference app) into one instance that
// owns its Postgres pool (starting a private cluster when none answers),
// its NATS connection (an embedded server by default), the engine's
// background components and the HTTP server, and stops them in order.
//
// An app team imports it to run Sluice with its own services:
//
//	app, err := server.Open(ctx, server.Config{Modules: myModules, UsersFile: "users.yml"})
//	...
//	go app.Serve(ln)
//	...
//	app.Shutdown(ctx)
//
// cmd/sluiced is such a program: flags and environment, subcommands, and
// the reference app's web build (Config.Web) and development users
// (Config.DevUsers).
package server
