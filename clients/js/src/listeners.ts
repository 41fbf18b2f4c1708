// A set of listeners with an unsubscribe function per subscription. Kept tiny on purpose: every
// subscription in the client goes through one of these, so "nothing leaks after unsubscribing"
// is a property of this class (and of removing empty sets from the maps that hold them).

/** Ends a subscription; calling it again does nothing. */
export type Unsubscribe = () => void;

export class Listeners<T extends unknown[]> {
  private readonly set = new Set<(...args: T) => void>();

  add(listener: (...args: T) => void): Unsubscribe {
    // A wrapper, so the same function subscribed twice gets two independent subscriptions.
    const entry = (...args: T) => listener(...args);
    this.set.add(entry);
    return () => {
      this.set.delete(entry);
    };
  }

  emit(...args: T): void {
    // A copy: a listener may unsubscribe (itself or others) while we iterate.
    for (const listener of [...this.set]) {
      try {
        listener(...args);
      } catch (e) {
        // One broken subscriber must not stop delivery to the others, nor the client's own
        // bookkeeping that runs after it. Surface it asynchronously, as an uncaught error.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  get size(): number {
    return this.set.size;
  }

  clear(): void {
    this.set.clear();
  }
}

/** Listeners grouped by key; a key's entry is removed when its last listener goes. */
export class KeyedListeners<K, T extends unknown[]> {
  private readonly map = new Map<K, Listeners<T>>();

  add(key: K, listener: (...args: T) => void): Unsubscribe {
    let listeners = this.map.get(key);
    if (!listeners) {
      listeners = new Listeners<T>();
      this.map.set(key, listeners);
    }
    const remove = listeners.add(listener);
    const owner = listeners;
    return () => {
      remove();
      if (owner.size === 0 && this.map.get(key) === owner) this.map.delete(key);
    };
  }

  emit(key: K, ...args: T): void {
    this.map.get(key)?.emit(...args);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  /** The number of keys with at least one listener. */
  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }
}
