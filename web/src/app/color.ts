import { Color, GlobalColorSchema, PermissionsSchema, type Permissions } from "@sluice/client/gen/sluice/color/v1/color_pb";
import { payloadAs, type Subscription } from "@sluice/client";
import { h, replace, type View } from "./dom";
import { colorNames, errorText, type App } from "./shared";

const colors = [Color.RED, Color.GREEN, Color.BLUE];
const setColorProcedure = "/sluice.color.v1.ColorService/SetColor";
/** The users the admin panel manages: the development users file's. */
const managedUsers = ["userA", "userB", "userC"];

function allowedBy(p: Permissions | undefined, c: Color): boolean {
  if (!p) return false;
  return c === Color.RED ? p.red : c === Color.GREEN ? p.green : p.blue;
}

/**
 * colorView is the color demo: three buttons that set `global-color`, each
 * enabled only while AccessService.Watch says the server would accept it;
 * the user's own `permissions/<id>` record; and, for admins, a live panel
 * of toggles per user and color. Nothing changes on click: the page waits
 * for the stream to deliver the written version.
 */
export function colorView(app: App): View {
  const { client } = app;
  const me = client.session!.userId;
  const isAdmin = client.session!.roles.includes("admin");
  const status = h("p", { class: "status", role: "status" });
  const current = h("p", { class: "current", data: { testid: "current-color" } });

  const buttons = colors.map((c) =>
    h(
      "button",
      {
        type: "button",
        class: `swatch ${colorNames[c]}`,
        disabled: true,
        data: { color: colorNames[c] },
        title: "checking…",
        on: { click: () => void setColor(c) },
      },
      colorNames[c],
    ),
  );

  async function setColor(c: Color): Promise<void> {
    status.textContent = `setting ${colorNames[c]}…`;
    try {
      const res = await client.color.setColor({ color: c });
      await app.colorSub!.waitForVersion(res.written!);
      status.textContent = `${colorNames[c]} is live (global-color v${res.written!.version}).`;
    } catch (err) {
      status.textContent = errorText(err);
    }
  }

  const watch = client.watchAccess(
    colors.map((c) => ({ procedure: setColorProcedure, params: { color: colorNames[c] } })),
    {
      onAnswers: (answers) =>
        answers.forEach((a, i) => {
          buttons[i].disabled = a?.allowed !== true;
          buttons[i].title = a === undefined ? "checking…" : a.allowed ? "allowed" : a.reason || "not allowed";
        }),
      onStatus: (s, err) => app.streamStatus(watch, s, err),
    },
  );

  const mine = h("ul", { class: "chips", data: { testid: "my-permissions" } });
  const panelBody = h("tbody");
  const records = isAdmin ? [...new Set([me, ...managedUsers])].map((u) => `permissions/${u}`) : [`permissions/${me}`];
  let perms: Subscription | undefined = undefined;
  perms = client.subscribe(
    { records },
    {
      onUpdate: () => renderPermissions(),
      onStatus: (s, err) => app.streamStatus(perms!, s, err),
      persist: "permissions", // resumed from its cursors after a reload
    },
  );

  async function toggle(user: string, c: Color, allowed: boolean, btn: HTMLButtonElement): Promise<void> {
    btn.classList.add("pending");
    status.textContent = "";
    try {
      const res = await client.color.setPermission({ userId: user, color: c, allowed });
      await perms!.waitForVersion(res.written!);
    } catch (err) {
      status.textContent = errorText(err);
    } finally {
      btn.classList.remove("pending");
    }
  }

  function renderPermissions(): void {
    const own = payloadAs(perms?.get(`permissions/${me}`), PermissionsSchema);
    replace(
      mine,
      ...colors.map((c) =>
        h("li", { class: allowedBy(own, c) ? "on" : "off", data: { color: colorNames[c] } }, colorNames[c], allowedBy(own, c) ? " ✓" : " ✗"),
      ),
    );
    if (!isAdmin) return;
    replace(
      panelBody,
      ...managedUsers.map((u) => {
        const p = payloadAs(perms?.get(`permissions/${u}`), PermissionsSchema);
        return h(
          "tr",
          {},
          h("th", { scope: "row" }, u),
          ...colors.map((c) => {
            const on = allowedBy(p, c);
            const btn: HTMLButtonElement = h(
              "button",
              {
                type: "button",
                class: `toggle ${colorNames[c]}`,
                data: { user: u, color: colorNames[c] },
                attrs: { "aria-pressed": String(on), "aria-label": `${u} may set ${colorNames[c]}` },
                on: { click: () => void toggle(u, c, !on, btn) },
              },
              on ? "allowed" : "—",
            );
            return h("td", {}, btn);
          }),
        );
      }),
    );
  }

  function renderCurrent(): void {
    const entry = app.colorSub?.get("global-color");
    const color = payloadAs(entry, GlobalColorSchema)?.color ?? Color.UNSPECIFIED;
    replace(
      current,
      "The global color is ",
      h("b", {}, colorNames[color]),
      entry ? ` — set by ${entry.updatedBy} (v${entry.version}).` : " — nobody has set it yet.",
    );
  }
  const unlisten = app.onGlobalColor(renderCurrent);
  renderCurrent();
  renderPermissions();

  const el = h(
    "main",
    { class: "page color-page" },
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Global color"),
      current,
      h("div", { class: "swatches" }, ...buttons),
      status,
      h(
        "p",
        { class: "muted" },
        "Each button is enabled only while AccessService.Watch says the server would accept SetColor for that color; the server checks again on every call.",
      ),
      h("h3", {}, "Your permissions"),
      mine,
    ),
    isAdmin
      ? h(
          "section",
          { class: "card", data: { testid: "admin-panel" } },
          h("h2", {}, "Permissions (admin)"),
          h("p", { class: "muted" }, "Toggle who may set which color. Users see the change within the same second."),
          h(
            "table",
            { class: "grid" },
            h("thead", {}, h("tr", {}, h("th", {}, "user"), ...colors.map((c) => h("th", {}, colorNames[c])))),
            panelBody,
          ),
        )
      : null,
  );
  return {
    el,
    dispose() {
      unlisten();
      watch.close();
      perms?.close();
    },
  };
}
