// The Sluice demo app: login, the color demo and channels, on the client
// package @sluice/client (web/client), imported as any app would. Served by
// sluiced at /; routes are plain paths (/login, /color, /chat/<channel id>)
// that sluiced answers with index.html.
import "./style.css";
import { Code } from "@connectrpc/connect";
import { Color, GlobalColorSchema } from "@sluice/client/gen/sluice/color/v1/color_pb";
import { Sluice, payloadAs, type StreamStatus } from "@sluice/client";
import { chatView } from "./chat";
import { colorView } from "./color";
import { h, replace, type View } from "./dom";
import { loginView } from "./login";
import { colorNames, errorText, type App } from "./shared";

const client = new Sluice();
const root = document.getElementById("app")!;
const statuses = new Map<object, StreamStatus>();
let view: View | undefined;
let afterLogin = "/color";
const colorListeners = new Set<() => void>();

const app: App = {
  client,
  navigate(path: string) {
    if (path !== location.pathname) history.pushState(null, "", path);
    render();
  },
  onGlobalColor(fn) {
    colorListeners.add(fn);
    return () => colorListeners.delete(fn);
  },
  streamStatus(id, status, error) {
    if (status === "closed") statuses.delete(id);
    else statuses.set(id, status);
    // A stream back live means the server is reachable: send what is queued now.
    if (status === "live") app.outbox?.kick();
    showConnection();
    if (error?.code === Code.Unauthenticated) void signOut("Your session ended. Please log in again.");
  },
};

function showConnection(): void {
  const down = [...statuses.values()].some((s) => s !== "live");
  document.body.dataset.conn = statuses.size === 0 ? "idle" : down ? "reconnecting" : "live";
  const el = document.getElementById("conn");
  if (el) el.textContent = statuses.size === 0 ? "" : down ? "reconnecting…" : "live";
}

function applyColor(): void {
  const color = payloadAs(app.colorSub?.get("global-color"), GlobalColorSchema)?.color ?? Color.UNSPECIFIED;
  document.body.dataset.color = colorNames[color];
  for (const fn of colorListeners) fn();
}

/** started opens what a signed-in page keeps for the whole session. */
function started(): void {
  // Posts queued in an earlier session of this user (e.g. before a reload)
  // are loaded from IndexedDB and sent now.
  app.outbox = client.openOutbox();
  // One app-wide stream: the page background follows `global-color`. Its
  // state is kept across reloads: a reloaded page resumes it.
  app.colorSub = client.subscribe(
    { records: ["global-color"] },
    { onUpdate: applyColor, onStatus: (s, err) => app.streamStatus(app.colorSub!, s, err), persist: "global-color" },
  );
}

async function signIn(username: string, password: string): Promise<void> {
  await client.login(username, password);
  started();
  const to = afterLogin === "/" || afterLogin === "/login" ? "/color" : afterLogin;
  app.navigate(to);
}

/**
 * boot resumes the session of an earlier page load (the HttpOnly session
 * cookie: a reload keeps the user signed in), else shows the login.
 */
async function boot(): Promise<void> {
  document.body.dataset.page = "loading";
  let notice: string | undefined;
  try {
    if (await client.resume()) started();
  } catch (err) {
    notice = `Could not reach the server (${errorText(err)}). Please log in.`;
  }
  render(notice);
}

async function signOut(notice?: string): Promise<void> {
  view?.dispose();
  view = undefined;
  app.colorSub = undefined;
  app.outbox?.close();
  app.outbox = undefined;
  statuses.clear();
  try {
    await client.logout();
  } catch {
    // The session may be gone already; the token is forgotten either way.
  }
  delete document.body.dataset.color;
  afterLogin = "/color";
  history.pushState(null, "", "/login");
  render(notice);
}

function header(): HTMLElement {
  const s = client.session!;
  const link = (path: string, label: string) =>
    h("a", {
      href: path,
      class: location.pathname.startsWith(path) ? "active" : "",
      on: {
        click: (ev) => {
          ev.preventDefault();
          app.navigate(path);
        },
      },
    }, label);
  return h("header", { class: "topbar" },
    h("span", { class: "brand" }, "Sluice"),
    h("nav", {}, link("/color", "Color demo"), link("/chat", "Channels")),
    h("span", { class: "spacer" }),
    h("span", { id: "conn", class: "conn" }),
    h("span", { class: "who", data: { testid: "whoami" } }, s.userId, s.roles.includes("admin") ? h("small", {}, " admin") : null),
    h("button", { class: "ghost", type: "button", on: { click: () => void signOut() } }, "Log out"),
  );
}

function render(notice?: string): void {
  view?.dispose();
  view = undefined;
  const path = location.pathname;
  if (!client.signedIn) {
    if (path !== "/login") afterLogin = path;
    if (path !== "/login") history.replaceState(null, "", "/login");
    document.body.dataset.page = "login";
    view = loginView(signIn, notice);
    replace(root, view.el);
    return;
  }
  if (path === "/" || path === "/login") {
    history.replaceState(null, "", "/color");
    return render();
  }
  if (path === "/color") {
    document.body.dataset.page = "color";
    view = colorView(app);
  } else if (path === "/chat" || path.startsWith("/chat/")) {
    document.body.dataset.page = "chat";
    view = chatView(app, decodeURIComponent(path.slice("/chat/".length)));
  } else {
    document.body.dataset.page = "missing";
    const el = h("main", { class: "page" }, h("section", { class: "card" }, h("h2", {}, "Not found"), h("p", {}, `Nothing at ${path}.`)));
    view = { el, dispose() {} };
  }
  replace(root, header(), view.el);
  showConnection();
  applyColor();
}

window.addEventListener("popstate", () => render());
window.addEventListener("online", () => app.outbox?.kick());
void boot();
