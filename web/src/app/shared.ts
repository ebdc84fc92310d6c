import { Code, ConnectError } from "@connectrpc/connect";
import { Color } from "@sluice/client/gen/sluice/color/v1/color_pb";
import type { Outbox, Sluice, StreamStatus, Subscription } from "@sluice/client";

/** App is what the views share: the client, navigation and stream status. */
export interface App {
  client: Sluice;
  navigate(path: string): void;
  /** streamStatus reports a stream's status for the connection indicator. */
  streamStatus(id: object, status: StreamStatus, error?: ConnectError): void;
  /**
   * outbox sends the calls that must survive being offline and reloads
   * (the chat's posts), while signed in.
   */
  outbox?: Outbox;
  /** colorSub follows `global-color` while signed in. */
  colorSub?: Subscription;
  /** onGlobalColor calls fn after every change of `global-color`; it returns the unsubscribe. */
  onGlobalColor(fn: () => void): () => void;
}

/** colorNames names the demo's colors as the API's params and CSS do. */
export const colorNames: Record<Color, string> = {
  [Color.UNSPECIFIED]: "none",
  [Color.RED]: "red",
  [Color.GREEN]: "green",
  [Color.BLUE]: "blue",
};

/** errorText renders an RPC error for people: the code and the message. */
export function errorText(err: unknown): string {
  const ce = ConnectError.from(err);
  const code = Code[ce.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
  return `${code}: ${ce.rawMessage}`;
}
