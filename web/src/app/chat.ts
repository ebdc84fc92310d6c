import { createContextValues } from "@connectrpc/connect";
import type { Channel } from "@sluice/client/gen/sluice/channel/v1/channel_pb";
import { ChannelMemberSchema, ChannelSchema } from "@sluice/client/gen/sluice/channel/v1/channel_pb";
import { MessageSchema, MessageService, type PostMessageRequest, type PostMessageResponse } from "@sluice/client/gen/sluice/message/v1/message_pb";
import { InvitationSchema, Role, type MyOrg } from "@sluice/client/gen/sluice/org/v1/org_pb";
import { payloadAs, retryPolicy, type Entry, type OutboxItem, type Subscription, type Update } from "@sluice/client";
import { h, reconcile, replace, type View } from "./dom";
import { errorText, type App } from "./shared";

/** How long a typing signal shows, and how often this client sends one. */
const typingShowMs = 4000;
const typingSendMs = 2000;
/** The channel opens on its newest `windowSize` records; older ones come in pages as the user scrolls up. */
const windowSize = 50;
/** How close to the top (px) scrolling loads the next older page. */
const loadMargin = 200;

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
 * chatView is the channel view: the caller's pending invitations (a
 * stream on `userorgs/<me>`, with accept and decline), the caller's
 * organizations and their channels (ListMyOrgs, ListChannels), and for
 * the selected channel one stream on its scope `channel/<id>` with a
 * window of the newest 50 records — the channel record, its members and
 * its messages in commit order — plus typing and presence signals; scrolling to the top pages
 * older messages in (History, SyncService.List). Posting goes through the
 * outbox: the message shows greyed ("sending…") until the stream delivers
 * it, survives a reload while the server is unreachable, and shows as
 * failed, with retry and discard, if the server refuses it.
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

  // Pending invitations live in the caller's own scope `userorgs/<me>`
  // (`invitation/<me>/<org>`); an invitation grants nothing until accepted.
  const invites = h("section", { class: "invitations", data: { testid: "invitations" } });
  const inviteError = h("p", { class: "error", role: "alert" });
  let invitesSub: Subscription | undefined = undefined;
  invitesSub = client.subscribe(
    { scopes: [{ scope: `userorgs/${me}` }] },
    {
      onUpdate: () => renderInvites(),
      onStatus: (s, err) => app.streamStatus(invitesSub!, s, err),
      persist: `userorgs/${me}`, // resumed from its cursor after a reload
    },
  );

  function renderInvites(): void {
    const pending = (invitesSub?.list("invitation/") ?? []).map((e) => payloadAs(e, InvitationSchema)).filter((i) => i !== undefined);
    if (pending.length === 0) {
      replace(invites, inviteError);
      return;
    }
    replace(
      invites,
      h("h3", {}, "Invitations"),
      h(
        "ul",
        { class: "invites" },
        ...pending.map((inv) =>
          h(
            "li",
            { data: { org: inv.orgId } },
            h("span", {}, inv.orgName, h("small", { class: "muted" }, ` ${roleName(inv.role)}, from ${inv.invitedBy}`)),
            h("button", { type: "button", data: { answer: "accept" }, on: { click: () => void answer(inv.orgId, true) } }, "Accept"),
            h("button", { type: "button", class: "ghost", data: { answer: "decline" }, on: { click: () => void answer(inv.orgId, false) } }, "Decline"),
          ),
        ),
      ),
      inviteError,
    );
  }

  /** answer accepts or declines an invitation; the stream removes it, and an accepted organization joins the sidebar. */
  async function answer(orgId: string, accept: boolean): Promise<void> {
    inviteError.textContent = "";
    try {
      if (!accept) {
        await client.org.declineInvitation({ orgId });
        return;
      }
      await client.org.acceptInvitation({ orgId });
      const list = await loadSidebar();
      if (!disposed) renderSidebar(list);
    } catch (err) {
      inviteError.textContent = errorText(err);
    }
  }

  async function loadSidebar(): Promise<OrgChannels[]> {
    // Both lists come in pages; read every page.
    const orgs: MyOrg[] = [];
    let orgToken = "";
    do {
      const res = await client.org.listMyOrgs({ pageToken: orgToken });
      orgs.push(...res.orgs);
      orgToken = res.nextPageToken;
    } while (orgToken !== "");
    return Promise.all(
      orgs.map(async (org) => {
        const all: Channel[] = [];
        const joined = new Set<string>();
        let token = "";
        do {
          const res = await client.channel.listChannels({ orgId: org.org!.id, pageToken: token });
          all.push(...res.channels);
          res.joinedChannelIds.forEach((id) => joined.add(id));
          token = res.nextPageToken;
        } while (token !== "");
        const channels = all.sort((a, b) => a.name.localeCompare(b.name));
        return { org, channels, joined };
      }),
    );
  }

  function renderSidebar(list: OrgChannels[]): void {
    if (list.length === 0) {
      replace(sidebar, invites, h("p", { class: "muted" }, "You are in no organization. Run `sluiced seed` for demo data."));
      return;
    }
    replace(
      sidebar,
      invites,
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
                          // The open channel stays open: reopening it would only churn its stream.
                          if (c.id === channelId && sub && !sub.closed) return;
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
    const scope = `channel/${c.id}`;
    const title = h("h2", {}, `# ${c.name}`);
    const conn = h("span", { class: "muted", data: { testid: "channel-status" } }, "connecting…");
    const messages = h("ol", { class: "messages", data: { testid: "messages" } });
    const edge = h("li", { class: "history-edge muted", data: { testid: "history" } });
    const empty = h("li", { class: "muted empty" }, "No messages yet.");
    const typingLine = h("p", { class: "typing", data: { testid: "typing" } });
    const members = h("ul", { class: "members", data: { testid: "members" } });
    const input = h("input", { name: "text", autocomplete: "off", placeholder: `Message #${c.name}`, maxLength: 4000 });
    const send = h("button", { type: "submit" }, "Send");
    const error = h("p", { class: "error", role: "alert" });
    const typers = new Map<string, ReturnType<typeof setTimeout>>();
    const online = new Set<string>();
    let presenceSeen = false;
    let lastTyping = 0;
    let historyError = "";
    const rendered = new Map<string, { version: bigint; li: HTMLLIElement }>();
    const pendingRendered = new Map<string, { sig: string; li: HTMLLIElement }>();
    /** Posts the server applied whose message the stream has not delivered yet: still "sending". */
    const awaiting = new Map<string, { item: OutboxItem; key: string; version: bigint }>();
    /**
     * The stream may deliver a post before its answer arrives (or after
     * the answer was lost): outbox key → the message delivered live, by me,
     * with its text, while it was the head of the queue (the only call that
     * can have been applied unacknowledged). The answer's `written` key
     * confirms or corrects it.
     */
    const claimed = new Map<string, string>();

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
      // A typing signal is stale in a second: one attempt, no retries.
      client.message.sendTyping({ channelId: c.id }, { contextValues: createContextValues().set(retryPolicy, { maxAttempts: 1 }) }).catch(() => {});
    });

    async function post(): Promise<void> {
      const text = input.value.trim();
      if (text === "") return;
      error.textContent = "";
      lastTyping = 0;
      if (app.outbox) {
        // Stored, then sent in order with its key; shown pending until the stream has it.
        try {
          app.outbox.enqueue(MessageService.method.postMessage, { channelId: c.id, text });
        } catch (err) {
          error.textContent = errorText(err);
          return;
        }
        input.value = "";
        input.focus();
        messages.scrollTop = messages.scrollHeight;
        return;
      }
      send.disabled = true;
      try {
        const res = await client.message.postMessage({ channelId: c.id, text });
        input.value = "";
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

    /** ours reports whether an outbox item is a post to this channel. */
    function ours(item: OutboxItem): boolean {
      return item.method === MessageService.method.postMessage && (item.request as PostMessageRequest).channelId === c.id;
    }

    /** pendingItem shows a post the stream has not delivered: sending, or failed with retry and discard. */
    function pendingItem(item: OutboxItem, sent: boolean): HTMLLIElement {
      const failed = item.state === "failed";
      const state = failed ? "failed" : sent ? "sent" : item.state;
      const sig = `${state}:${item.error?.code ?? ""}`;
      const have = pendingRendered.get(item.key);
      if (have && have.sig === sig) return have.li;
      const li = h(
        "li",
        { class: `msg mine ${failed ? "failed" : "pending"}`, data: { key: `outbox/${item.key}`, state } },
        h("span", { class: "author" }, me),
        h("time", {}, failed ? "not sent" : "sending…"),
        h("span", { class: "text" }, (item.request as PostMessageRequest).text),
        failed
          ? h(
              "span",
              { class: "outbox-error" },
              h("small", {}, errorText(item.error), " "),
              h("button", { type: "button", class: "ghost small", on: { click: () => void app.outbox?.retry(item.key) } }, "Retry"),
              h("button", { type: "button", class: "ghost small", on: { click: () => void app.outbox?.discard(item.key) } }, "Discard"),
            )
          : null,
      );
      pendingRendered.set(item.key, { sig, li });
      return li;
    }

    /** claim matches a message delivered live to the post at the head of the outbox, if it is that post. */
    function claim(e: Entry): void {
      const head = app.outbox?.items().find((i) => i.state !== "failed");
      if (!head || !ours(head) || (head.state !== "sending" && head.attempts === 0)) return;
      if (claimed.has(head.key) || [...claimed.values()].includes(e.key)) return;
      const m = payloadAs(e, MessageSchema);
      if (m && m.author === me && !m.system && m.text === (head.request as PostMessageRequest).text) claimed.set(head.key, e.key);
    }

    function renderEdge(): void {
      edge.textContent = pager.exhausted
        ? `This is the beginning of #${c.name}.`
        : historyError
          ? `Could not load older messages (${historyError}); scroll up to retry.`
          : pager.loading
            ? "Loading older messages…"
            : "Scroll up for older messages.";
      edge.dataset.state = pager.exhausted ? "start" : historyError ? "error" : pager.loading ? "loading" : "more";
    }

    function renderMessages(): void {
      const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
      // Keep the first visible message in place when older ones are prepended.
      const top = messages.getBoundingClientRect().top;
      let anchor: Element | undefined;
      let anchorAt = 0;
      if (!atBottom) {
        for (const li of messages.children) {
          if (li === edge) continue;
          const r = li.getBoundingClientRect();
          if (r.bottom > top) {
            anchor = li;
            anchorAt = r.top - top;
            break;
          }
        }
      }
      const list = sub!.list(`message/${c.id}/`);
      const keep = new Set<string>();
      const items: HTMLLIElement[] = list.map((e) => {
        keep.add(e.key);
        const have = rendered.get(e.key);
        if (have && have.version === e.version) return have.li;
        const li = messageItem(e);
        rendered.set(e.key, { version: e.version, li });
        return li;
      });
      for (const k of rendered.keys()) if (!keep.has(k)) rendered.delete(k);
      // Posts not delivered yet, after the delivered ones, in send order.
      for (const [k, w] of awaiting) if (sub!.state.hasVersion(w.key, w.version)) awaiting.delete(k);
      const pending = [...awaiting.values()].map((w) => pendingItem(w.item, true));
      for (const item of app.outbox?.items() ?? []) {
        const got = claimed.get(item.key);
        if (got !== undefined && sub!.state.get(got)) continue; // delivered; its answer is on the way
        if (ours(item)) pending.push(pendingItem(item, false));
      }
      const keepPending = new Set(pending.map((li) => li.dataset.key!.slice("outbox/".length)));
      for (const k of pendingRendered.keys()) if (!keepPending.has(k)) pendingRendered.delete(k);
      renderEdge();
      reconcile(messages, [edge, ...items, ...pending, ...(items.length === 0 && pending.length === 0 ? [empty] : [])]);
      if (atBottom) messages.scrollTop = messages.scrollHeight;
      else if (anchor?.isConnected) messages.scrollTop += anchor.getBoundingClientRect().top - top - anchorAt;
    }

    /** loadOlder pages older messages in while the list is scrolled near its top. */
    async function loadOlder(): Promise<void> {
      if (disposed || !sub!.synced || pager.loading || pager.exhausted) return;
      const p = pager.loadOlder();
      renderEdge();
      try {
        await p;
        historyError = "";
      } catch (err) {
        historyError = errorText(err);
      }
      renderEdge();
      // A list that does not fill the view, or a user still at the top: next page.
      if (!disposed && !historyError && !pager.exhausted && messages.scrollTop < loadMargin) void loadOlder();
    }
    messages.addEventListener("scroll", () => {
      if (messages.scrollTop < loadMargin) void loadOlder();
    });

    function renderMembers(): void {
      // The window may not hold every membership of a busy channel: add
      // who is online, and the memberships that paging brought in.
      const ids = new Set(
        sub!
          .list(`chanmember/${c.id}/`)
          .map((e) => payloadAs(e, ChannelMemberSchema)?.userId ?? "")
          .filter((u) => u !== ""),
      );
      for (const u of online) ids.add(u);
      replace(
        members,
        ...[...ids].sort().map((u) =>
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
      let caughtUp = false;
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
            if (u.kind === "record" && !u.snapshot && !u.previous && u.entry.key.startsWith(`message/${c.id}/`)) claim(u.entry);
            // A posted message ends its author's typing.
            if (u.kind === "record" && u.entry.key.startsWith("message/") && typers.has(u.entry.updatedBy)) {
              clearTimeout(typers.get(u.entry.updatedBy));
              typers.delete(u.entry.updatedBy);
              renderTyping();
            }
            break;
          case "history":
            msgs = mems = true;
            break;
          case "reset":
            msgs = mems = true;
            historyError = "";
            break;
          case "synced":
            // Presence starts over on every (re)connection: presence.here
            // for each online user follows right after synced.
            online.clear();
            conn.textContent = "";
            msgs = mems = caughtUp = true;
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
      // A window too short to fill the view (or scroll): page in until it does.
      if (caughtUp && messages.scrollTop < loadMargin) void loadOlder();
    }

    sub = client.subscribe(
      { scopes: [{ scope, limit: windowSize }] },
      {
        // Kept across reloads: a reloaded page shows what it held at once
        // and the stream resumes from the saved cursor.
        persist: scope,
        onUpdate,
        onStatus: (s, err) => {
          app.streamStatus(sub!, s, err);
          if (s === "reconnecting") conn.textContent = "reconnecting…";
          if (s === "closed" && err) conn.textContent = errorText(err);
        },
      },
    );
    const pager = client.history(sub, scope, { pageSize: windowSize });
    const unlisten = app.outbox?.listen((ev) => {
      if (ev.kind === "sent" && ours(ev.item)) {
        // The answer names the message: it replaces any guess.
        claimed.delete(ev.item.key);
        const w = (ev.response as PostMessageResponse).written;
        if (w) awaiting.set(ev.item.key, { item: ev.item, key: w.key, version: w.version });
      }
      if (ev.kind === "failed") claimed.delete(ev.item.key);
      if (ev.kind === "change") renderMessages();
    });
    cleanup = () => {
      for (const t of typers.values()) clearTimeout(t);
      unlisten?.();
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
    renderMessages();
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
      invitesSub?.close();
    },
  };
}
