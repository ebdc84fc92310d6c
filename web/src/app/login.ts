import { h, type View } from "./dom";
import { errorText } from "./shared";

/** The development users of sluiced's built-in users file. */
const devUsers: Array<[user: string, password: string, note: string]> = [
  ["userA", "usera-pass", "org admin · may set red and green"],
  ["userB", "userb-pass", "member"],
  ["userC", "userc-pass", "guest"],
  ["admin", "admin-pass", "role admin · grants colors"],
];

/** loginView is the login form, with one-click development users. */
export function loginView(signIn: (user: string, password: string) => Promise<void>, notice?: string): View {
  const user = h("input", { name: "username", autocomplete: "username", required: true, placeholder: "userA" });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" }, notice ?? "");
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    {
      class: "login",
      on: {
        submit: (ev) => {
          ev.preventDefault();
          submit.disabled = true;
          error.textContent = "";
          signIn(user.value, pass.value).catch((err) => {
            error.textContent = errorText(err);
            submit.disabled = false;
          });
        },
      },
    },
    h("label", {}, "Username", user),
    h("label", {}, "Password", pass),
    submit,
    error,
  );
  const quick = h(
    "ul",
    { class: "devusers" },
    ...devUsers.map(([u, p, note]) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "ghost",
            data: { user: u },
            on: {
              click: () => {
                user.value = u;
                pass.value = p;
                form.requestSubmit();
              },
            },
          },
          u,
        ),
        h("small", {}, note),
      ),
    ),
  );
  const el = h(
    "main",
    { class: "page login-page" },
    h(
      "section",
      { class: "card narrow" },
      h("h1", {}, "Sluice"),
      h("p", { class: "muted" }, "An RPC-first realtime backend: every change is a typed RPC, every client follows it live."),
      form,
      h("h3", {}, "Development users"),
      quick,
    ),
  );
  queueMicrotask(() => user.focus());
  return { el, dispose() {} };
}
