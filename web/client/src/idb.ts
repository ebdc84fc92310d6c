import type { OutboxStorage, StoredCall } from "./outbox.js";

const store = "calls";

function done<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

/**
 * IndexedDbStorage keeps the outbox in the browser's IndexedDB (database
 * `sluice-outbox` by default, per origin), so queued calls survive reloads
 * and restarts of the browser. Writes resolve once committed with strict
 * durability (flushed to disk where the browser supports it).
 */
export class IndexedDbStorage implements OutboxStorage {
  private db?: Promise<IDBDatabase>;

  constructor(readonly name = "sluice-outbox") {}

  /** available reports whether this environment has IndexedDB. */
  static get available(): boolean {
    return typeof globalThis.indexedDB !== "undefined";
  }

  async load(owner: string): Promise<StoredCall[]> {
    const db = await this.open();
    const tx = db.transaction(store, "readonly");
    return done(tx.objectStore(store).index("owner").getAll(IDBKeyRange.only(owner)) as IDBRequest<StoredCall[]>);
  }

  async put(call: StoredCall): Promise<void> {
    const db = await this.open();
    const tx = db.transaction(store, "readwrite", { durability: "strict" });
    tx.objectStore(store).put(call);
    await committed(tx);
  }

  async delete(key: string): Promise<void> {
    const db = await this.open();
    const tx = db.transaction(store, "readwrite", { durability: "strict" });
    tx.objectStore(store).delete(key);
    await committed(tx);
  }

  private open(): Promise<IDBDatabase> {
    if (!this.db) {
      this.db = new Promise<IDBDatabase>((resolve, reject) => {
        const req = globalThis.indexedDB.open(this.name, 1);
        req.onupgradeneeded = () => {
          const os = req.result.createObjectStore(store, { keyPath: "key" });
          os.createIndex("owner", "owner");
        };
        req.onsuccess = () => {
          const db = req.result;
          // Another tab upgrading the schema: let it, and reopen next time.
          db.onversionchange = () => {
            db.close();
            this.db = undefined;
          };
          resolve(db);
        };
        req.onerror = () => reject(req.error);
      });
      this.db.catch(() => (this.db = undefined));
    }
    return this.db;
  }
}
