import { describe, expect, it } from "vitest";
import { backoffDelay } from "../src/backoff.js";

describe("backoffDelay", () => {
  it("grows exponentially up to the cap, jittered between half the ceiling and the ceiling", () => {
    const table: Array<[attempt: number, random: number, want: number]> = [
      [0, 0, 125],
      [0, 0.999999, 249.999875],
      [1, 0, 250],
      [2, 0.5, 750],
      [4, 0, 2000],
      [5, 0, 2500], // capped at 5000
      [50, 1, 5000],
      [-3, 0, 125],
    ];
    for (const [attempt, random, want] of table) {
      expect(backoffDelay(attempt, { random: () => random })).toBeCloseTo(want, 6);
    }
  });

  it("spreads clients apart", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 50; i++) seen.add(Math.round(backoffDelay(3)));
    expect(seen.size).toBeGreaterThan(10);
    for (const d of seen) {
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});
