import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { WatchResponseSchema, type WatchResponse } from "../src/gen/sluice/access/v1/access_pb.js";
import { AccessWatch, type Question } from "../src/access.js";

const questions: Question[] = ["red", "green", "blue"].map((color) => ({
  procedure: "/sluice.color.v1.ColorService/SetColor",
  params: { color },
}));

function answers(pairs: Array<[index: number, allowed: boolean]>): WatchResponse {
  return create(WatchResponseSchema, {
    answers: pairs.map(([i, allowed]) => ({ question: questions[i], allowed, reason: allowed ? "" : "not allowed" })),
    index: pairs.map(([i]) => i),
  });
}

describe("AccessWatch", () => {
  it("merges changed answers by index, forgets them while down, and resumes", async () => {
    const seen: boolean[][] = [];
    let conn = 0;
    const w = new AccessWatch(
      (_req, signal) =>
        (async function* () {
          conn++;
          if (conn === 1) {
            yield answers([[0, true], [1, true], [2, false]]);
            yield create(WatchResponseSchema, {}); // heartbeat
            yield answers([[0, false]]);
            throw new ConnectError("restart", Code.Unavailable);
          }
          yield answers([[0, true], [1, true], [2, false]]);
          await new Promise((_, reject) => signal.addEventListener("abort", () => reject(new ConnectError("x", Code.Canceled))));
        })(),
      questions,
      {
        onAnswers: (as) => seen.push(as.map((a) => a?.allowed === true)),
        sleep: async () => {},
      },
    ).start();
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("timeout")), 2000);
      const tick = () => (conn === 2 && seen.length === 4 ? (clearTimeout(t), resolve()) : setTimeout(tick, 1));
      tick();
    });
    expect(seen).toEqual([
      [true, true, false],
      [false, true, false],
      [false, false, false], // down: nothing is allowed
      [true, true, false],
    ]);
    expect(w.allowed(0)).toBe(true);
    w.close();
    await w.done;
  });
});
