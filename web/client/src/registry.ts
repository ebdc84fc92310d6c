import { createRegistry, type DescMessage, type Message, type MessageShape, type Registry } from "@bufbuild/protobuf";
import { anyIs, anyUnpack } from "@bufbuild/protobuf/wkt";
import { file_sluice_channel_v1_channel } from "./gen/sluice/channel/v1/channel_pb.js";
import { file_sluice_color_v1_color } from "./gen/sluice/color/v1/color_pb.js";
import { file_sluice_message_v1_message } from "./gen/sluice/message/v1/message_pb.js";
import { file_sluice_notify_v1_notify } from "./gen/sluice/notify/v1/notify_pb.js";
import { file_sluice_org_v1_org } from "./gen/sluice/org/v1/org_pb.js";
import { file_sluice_user_v1_user } from "./gen/sluice/user/v1/user_pb.js";
import type { Entry } from "./cursors.js";

/**
 * payloadRegistry knows every record payload type Sluice stores (User,
 * GlobalColor, Permissions, Org, Member, Channel, ChannelMember, Message,
 * Notification),
 * so a record's google.protobuf.Any can be decoded without knowing its type
 * in advance. Add your own files with createRegistry(payloadRegistry, …).
 */
export const payloadRegistry: Registry = createRegistry(
  file_sluice_user_v1_user,
  file_sluice_color_v1_color,
  file_sluice_org_v1_org,
  file_sluice_channel_v1_channel,
  file_sluice_message_v1_message,
  file_sluice_notify_v1_notify,
);

/**
 * decodePayload decodes an entry's payload with the registry; undefined for
 * a tombstone or a type the registry does not know.
 */
export function decodePayload(entry: Entry | undefined, registry: Registry = payloadRegistry): Message | undefined {
  const any = entry?.record?.payload;
  return any ? anyUnpack(any, registry) : undefined;
}

/**
 * payloadAs decodes an entry's payload as the given message type, or
 * returns undefined when the entry is missing, removed, or of another type:
 * `payloadAs(sub.get("global-color"), GlobalColorSchema)?.color`.
 */
export function payloadAs<Desc extends DescMessage>(entry: Entry | undefined, schema: Desc): MessageShape<Desc> | undefined {
  const any = entry?.record?.payload;
  if (!any || !anyIs(any, schema)) return undefined;
  return anyUnpack(any, schema);
}
