import type { SavedState } from "./cursors.js";

/**
 * StateStore keeps one subscription's state across page reloads
 * (SubscriptionOptions.store): load returns what save last wrote, or
 * undefined. Implementations must not throw.
 */
export interface StateStore {
  load(): unknown;
  save(state: SavedState): void;
}

/** savedPrefix starts the sessionStorage keys of saved stream states. */
export const savedPrefix = "sluice:stream:";

function storage(): Storage | undefined {
  try {
    return globalThis.sessionStorage;
  } catch {
    return undefined; // storage disabled by the browser's settings
  }
}

/**
 * SessionStateStore keeps a subscription's state in the tab's
 * sessionStorage under `sluice:stream:<owner>:<name>`: it survives a reload
 * of the tab, not the tab itself, and is never shared with another tab.
 * Sluice.logout removes every saved state (clearSavedStreams). A state too
 * large for the storage quota is not saved (the next load starts over).
 */
export class SessionStateStore implements StateStore {
  readonly key: string;
  private discarded = false;

  constructor(owner: string, name: string) {
    this.key = `${savedPrefix}${owner}:${name}`;
  }

  /** available reports whether sessionStorage can be used here. */
  static get available(): boolean {
    return storage() !== undefined;
  }

  load(): unknown {
    if (this.discarded) return undefined;
    try {
      const raw = storage()?.getItem(this.key);
      return raw ? JSON.parse(raw) : undefined;
    } catch {
      return undefined;
    }
  }

  /** discard removes the saved state; later saves are ignored (logout). */
  discard(): void {
    this.discarded = true;
    storage()?.removeItem(this.key);
  }

  save(state: SavedState): void {
    if (this.discarded) return;
    const s = storage();
    try {
      s?.setItem(this.key, JSON.stringify(state));
    } catch {
      // Over quota: better no saved state than a stale one.
      s?.removeItem(this.key);
    }
  }
}

/** clearSavedStreams removes every stream state saved in sessionStorage. */
export function clearSavedStreams(): void {
  const s = storage();
  if (!s) return;
  const keys: string[] = [];
  for (let i = 0; i < s.length; i++) {
    const k = s.key(i);
    if (k?.startsWith(savedPrefix)) keys.push(k);
  }
  for (const k of keys) s.removeItem(k);
}
