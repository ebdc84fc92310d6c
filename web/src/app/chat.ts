import type { Channel } from "../gen/sluice/channel/v1/channel_pb";
import { ChannelMemberSchema, ChannelSchema } from "../gen/sluice/channel/v1/channel_pb";
import { MessageSchema } from "../gen/sluice/message/v1/message_pb";
import { Role, type MyOrg } from "../gen/sluice/org/v1/org_pb";
import { payloadAs, type Entry, type Subscription, type Update } from "../lib";
import { h, replace, type View } from "./dom";
import { errorText, type App } from "./shared";

/** How long a typing signal shows, and how often this client sends one. */
const typingShowMs = 4000;
const typingSendMs = 2000;

interface OrgChannels {
  org: MyOrg;
  channels: Channel[];
  joined: Set<string>;
}

function roleName(r: Role): string {
  return Role[r].toLowerCase();
}

function clock(d: Date | undefined): string {
  return d ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

/**
 * chatView is the channel view: the caller's organizations and their
 * channels (ListMyOrgs, ListChannels), and for the selected channel one
 * stream on its scope `channel/<id>` — the channel record, its members and
 * its messages in commit order — plus typing and presence signals. Posting
 * never adds a message locally: it appears when the stream delivers it.
 */
export function chatView(app: App, channelId: string): View {
  const { client } = app;
  const me = client.session!.userId;
  const sidebar = h("aside", { class: "sidebar" }, h("p", { class: "muted" }, "loading…"));
  const main = h("section", { class: "channel" });
  const el = h("main", { class: "page chat-page" }, sidebar, main);
  let sub: Subscription | undefined;
  let disposed = false;
  let cleanup: () => void = () => {};

  async function loadSidebar(): Promise<OrgChannels[]> {
    const { orgs } = await client.org.listMyOrgs({});
    return Promise.all(
      orgs.map(async (org) => {
        const res = await client.channel.listChannels({ orgId: org.org!.id });
        const channels = [...res.channels].sort((a, b) => a.name.localeCompare(b.name));
        return { org, channels, joined: new Set(res.joinedChannelIds) };
      }),
    );
  }

  function renderSidebar(list: OrgChannels[]): void {
    if (list.length === 0) {
      replace(sidebar, h("p", { class: "muted" }, "You are in no organization. Run `sluiced seed` for demo data."));
      return;
    }
    replace(
      sidebar,
      ...list.map(({ org, channels, joined }) =>
        h(
          "div",
          { class: "org" },
          h("h3", {}, org.org!.name, h("small", {}, ` ${roleName(org.role)}`)),
          h(
            "ul",
            { class: "channels" },
            ...channels
              .filter((c) => !c.archived)
              .map((c) =>
                h(
                  "li",
                  { class: c.id === channelId ? "active" : "" },
                  h(
                    "a",
                    {
                      href: `/chat/${encodeURIComponent(c.id)}`,
                      data: { channel: c.name },
                      on: {
                        click: (ev) => {
                          ev.preventDefault();
                          app.navigate(`/chat/${encodeURIComponent(c.id)}`);
                        },
                      },
                    },
                    `# ${c.name}`,
                  ),
                  joined.has(c.id) ? null : h("small", { class: "muted" }, " not joined"),
                ),
              ),
          ),
        ),
      ),
    );
  }

  function notJoined(c: Channel): void {
    const error = h("p", { class: "error" });
    replace(
      main,
      h("header", { class: "channel-head" }, h("h2", {}, `# ${c.name}`)),
      h(
        "div",
        { class: "empty" },
        h("p", {}, "You are not a member of this channel."),
        h(
          "button",
          {
            type: "button",
            on: {
              click: async () => {
                try {
                  // The channel's snapshot includes the membership: it is
                  // committed when JoinChannel returns.
                  await client.channel.joinChannel({ channelId: c.id });
                  if (!disposed) app.navigate(`/chat/${encodeURIComponent(c.id)}`);
                } catch (err) {
                  error.textContent = errorText(err);
                }
              },
            },
          },
          "Join channel",
        ),
        error,
      ),
    );
  }

  function openChannel(c: Channel): void {
    const title = h("h2", {}, `# ${c.name}`);
    const conn = h("span", { class: "muted", data: { testid: "channel-status" } }, "connecting…");
    const messages = h("ol", { class: "messages", data: { testid: "messages" } });
    const typingLine = h("p", { class: "typing", data: { testid: "typing" } });
    const members = h("ul", { class: "members", data: { testid: "members" } });
    const input = h("input", { name: "text", autocomplete: "off", placeholder: `Message #${c.name}`, maxLength: 4000 });
    const send = h("button", { type: "submit" }, "Send");
    const error = h("p", { class: "error", role: "alert" });
    const typers = new Map<string, ReturnType<typeof setTimeout>>();
    const online = new Set<string>();
    let presenceSeen = false;
    let lastTyping = 0;
    const rendered = new Map<string, { version: bigint; li: HTMLLIElement }>();

    const form = h(
      "form",
      {
        class: "composer",
        on: {
          submit: (ev) => {
            ev.preventDefault();
            void post();
          },
        },
      },
      input,
      send,
    );
    input.addEventListener("input", () => {
      const now = Date.now();
      if (input.value === "" || now - lastTyping < typingSendMs) return;
      lastTyping = now;
      client.message.sendTyping({ channelId: c.id }).catch(() => {});
    });

    async function post(): Promise<void> {
      const text = input.value.trim();
      if (text === "") return;
      send.disabled = true;
      error.textContent = "";
      try {
        const res = await client.message.postMessage({ channelId: c.id, text });
        input.value = "";
        lastTyping = 0;
        await sub!.waitForVersion(res.written!);
      } catch (err) {
        error.textContent = errorText(err);
      } finally {
        send.disabled = false;
        input.focus();
      }
    }

    function messageItem(e: Entry): HTMLLIElement {
      const m = payloadAs(e, MessageSchema);
      return h(
        "li",
        { class: `msg${m?.system ? " system" : ""}${m?.author === me ? " mine" : ""}`, data: { key: e.key } },
        h("span", { class: "author" }, m?.author ?? e.updatedBy),
        h("time", {}, clock(e.updatedAt)),
        h("span", { class: "text" }, m?.text ?? "", m?.edited ? h("small", { class: "muted" }, " (edited)") : null),
      );
    }

    function renderMessages(): void {
      const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
      const list = sub!.list(`message/${c.id}/`);
      const keep = new Set<string>();
      const items = list.map((e) => {
        keep.add(e.key);
        const have = rendered.get(e.key);
        if (have && have.version === e.version) return have.li;
        const li = messageItem(e);
        rendered.set(e.key, { version: e.version, li });
        return li;
      });
      for (const k of rendered.keys()) if (!keep.has(k)) rendered.delete(k);
      messages.replaceChildren(...items);
      if (items.length === 0) messages.append(h("li", { class: "muted empty" }, "No messages yet."));
      if (atBottom) messages.scrollTop = messages.scrollHeight;
    }

    function renderMembers(): void {
      const ids = sub!
        .list(`chanmember/${c.id}/`)
        .map((e) => payloadAs(e, ChannelMemberSchema)?.userId ?? "")
        .filter((u) => u !== "")
        .sort();
      replace(
        members,
        ...ids.map((u) =>
          h(
            "li",
            { data: { user: u, online: String(online.has(u)) }, class: online.has(u) ? "online" : presenceSeen ? "offline" : "" },
            u,
            u === me ? h("small", { class: "muted" }, " (you)") : null,
          ),
        ),
      );
    }

    function renderTyping(): void {
      const who = [...typers.keys()].sort();
      typingLine.textContent =
        who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
    }

    function onUpdate(updates: Update[]): void {
      let msgs = false;
      let mems = false;
      for (const u of updates) {
        switch (u.kind) {
          case "record":
          case "removed":
            if (u.entry.key.startsWith("message/")) msgs = true;
            if (u.entry.key.startsWith("chanmember/")) mems = true;
            if (u.entry.key === `channel/${c.id}`) {
              const ch = payloadAs(u.entry, ChannelSchema);
              if (ch) title.textContent = `# ${ch.name}${ch.archived ? " (archived)" : ""}`;
            }
            // A posted message ends its author's typing.
            if (u.kind === "record" && u.entry.key.startsWith("message/") && typers.has(u.entry.updatedBy)) {
              clearTimeout(typers.get(u.entry.updatedBy));
              typers.delete(u.entry.updatedBy);
              renderTyping();
            }
            break;
          case "reset":
            msgs = mems = true;
            break;
          case "synced":
            // Presence starts over on every (re)connection: presence.here
            // for each online user follows right after synced.
            online.clear();
            conn.textContent = "";
            msgs = mems = true;
            break;
          case "revoked":
            conn.textContent = "You no longer have access to this channel.";
            msgs = mems = true;
            break;
          case "ephemeral": {
            const { kind, from } = u.event;
            if (kind === "typing" && from !== me) {
              clearTimeout(typers.get(from));
              typers.set(
                from,
                setTimeout(() => {
                  typers.delete(from);
                  renderTyping();
                }, typingShowMs),
              );
              renderTyping();
            } else if (kind === "presence.here" || kind === "presence.join") {
              presenceSeen = true;
              online.add(from);
              mems = true;
            } else if (kind === "presence.leave") {
              presenceSeen = true;
              online.delete(from);
              mems = true;
            }
            break;
          }
        }
      }
      if (msgs) renderMessages();
      if (mems) renderMembers();
    }

    sub = client.subscribe(
      { scopes: [`channel/${c.id}`] },
      {
        onUpdate,
        onStatus: (s, err) => {
          app.streamStatus(sub!, s, err);
          if (s === "reconnecting") conn.textContent = "reconnecting…";
          if (s === "closed" && err) conn.textContent = errorText(err);
        },
      },
    );
    cleanup = () => {
      for (const t of typers.values()) clearTimeout(t);
    };
    replace(
      main,
      h("header", { class: "channel-head" }, title, conn),
      h(
        "div",
        { class: "channel-body" },
        h("div", { class: "timeline" }, messages, typingLine, form, error),
        h("aside", { class: "people" }, h("h3", {}, "Members"), members),
      ),
    );
    queueMicrotask(() => input.focus());
  }

  loadSidebar()
    .then((list) => {
      if (disposed) return;
      renderSidebar(list);
      const all = list.flatMap((o) => o.channels.map((c) => ({ c, joined: o.joined.has(c.id) })));
      if (channelId === "") {
        const first = all.find((x) => x.joined && !x.c.archived) ?? all.find((x) => !x.c.archived);
        if (first) history.replaceState(null, "", `/chat/${encodeURIComponent(first.c.id)}`);
        channelId = first?.c.id ?? "";
        renderSidebar(list);
      }
      const pick = all.find((x) => x.c.id === channelId);
      if (!pick) {
        replace(main, h("div", { class: "empty" }, h("p", {}, channelId === "" ? "No channels yet." : "No such channel.")));
        return;
      }
      if (pick.joined) openChannel(pick.c);
      else notJoined(pick.c);
    })
    .catch((err) => {
      if (!disposed) replace(sidebar, h("p", { class: "error" }, errorText(err)));
    });

  return {
    el,
    dispose() {
      disposed = true;
      cleanup();
      sub?.close();
    },
  };
}
