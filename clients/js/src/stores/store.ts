// The shape every store shares, made for React's `useSyncExternalStore` (and just as usable
// without React): `subscribe` returns an unsubscribe function, `getSnapshot` returns the same
// object until something changed.

import { Listeners, type Unsubscribe } from "../listeners.js";

/** A store: `subscribe` to be told of changes, `getSnapshot` to read (as `useSyncExternalStore` wants). */
export abstract class Store<T> {
  private readonly listeners = new Listeners<[]>();
  private snapshot: T | undefined;

  /** Called when the store changes. Arrow property, so it can be passed around unbound. */
  readonly subscribe = (listener: () => void): Unsubscribe => this.listeners.add(listener);

  /** The current state: the same object until something changed. */
  readonly getSnapshot = (): T => {
    if (this.snapshot === undefined) this.snapshot = this.build();
    return this.snapshot;
  };

  /** Builds a fresh snapshot from the store's state. */
  protected abstract build(): T;

  /** The state changed: drop the snapshot and tell subscribers. */
  protected changed(): void {
    this.snapshot = undefined;
    this.listeners.emit();
  }

  protected get subscriberCount(): number {
    return this.listeners.size;
  }

  protected clearSubscribers(): void {
    this.listeners.clear();
  }
}
