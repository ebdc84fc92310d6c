// Package app is the reference app built on Sluice: a chat (organizations,
// teams, channels, messages, invitations, notifications) and the color
// demo. Each sub-package is one module (kit.Module); services.ReferenceApp
// lists them. Nothing in the framework (services/auth, user, syncsvc,
// access, admin, edge, kit, sync/engine, authz) imports this tree except
// that list, so an app of its own replaces it without forking.
package app
