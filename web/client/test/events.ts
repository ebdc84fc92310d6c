// Builders of stream events for the unit tests.
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { MessageSchema } from "../src/gen/sluice/message/v1/message_pb.js";
import { SubscribeResponseSchema, type SubscribeResponse } from "../src/gen/sluice/sync/v1/sync_pb.js";

/** msg is a message record event in scope channel/c: key message/c/<id>. */
export function msg(id: string, version: number, seq: number, opts: { snapshot?: boolean; coalesced?: boolean; text?: string } = {}): SubscribeResponse {
  return record(`message/c/${id}`, "channel/c", version, seq, opts);
}

export function record(
  key: string,
  scope: string,
  version: number,
  seq: number,
  opts: { snapshot?: boolean; coalesced?: boolean; text?: string } = {},
): SubscribeResponse {
  const payload = anyPack(MessageSchema, create(MessageSchema, { id: key.split("/").pop(), channelId: "c", author: "userA", text: opts.text ?? `${key} v${version}` }));
  return create(SubscribeResponseSchema, {
    event: {
      case: "record",
      value: {
        record: { key, scope, version: BigInt(version), seq: BigInt(seq), payload, updatedBy: "userA" },
        snapshot: opts.snapshot ?? false,
        coalesced: opts.coalesced ?? false,
      },
    },
  });
}

export function removed(key: string, scope: string, version: number, seq: number): SubscribeResponse {
  return create(SubscribeResponseSchema, {
    event: { case: "removed", value: { key, scope, version: BigInt(version), seq: BigInt(seq), updatedBy: "userA" } },
  });
}

export function synced(cursors: Record<string, number> = {}): SubscribeResponse {
  return create(SubscribeResponseSchema, {
    event: {
      case: "synced",
      value: { scopes: Object.entries(cursors).map(([scope, seq]) => ({ scope, afterSeq: BigInt(seq) })) },
    },
  });
}

export function reset(scope: string, horizon: number): SubscribeResponse {
  return create(SubscribeResponseSchema, { event: { case: "reset", value: { scope, horizonSeq: BigInt(horizon) } } });
}

export function revoked(target: { key?: string; scope?: string }): SubscribeResponse {
  return create(SubscribeResponseSchema, {
    event: { case: "revoked", value: { key: target.key ?? "", scope: target.scope ?? "", reason: "access revoked" } },
  });
}

export function heartbeat(): SubscribeResponse {
  return create(SubscribeResponseSchema, { event: { case: "heartbeat", value: {} } });
}

export function typing(from: string): SubscribeResponse {
  return create(SubscribeResponseSchema, { event: { case: "ephemeral", value: { scope: "channel/c", kind: "typing", from } } });
}
