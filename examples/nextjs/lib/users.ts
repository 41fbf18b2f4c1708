// The demo's users. A real app has its own user store (and hashed passwords); what matters for
// confab is that each user has a stable id, which becomes the token's `sub`.

export interface DemoUser {
  id: string;
  name: string;
}

export const USERS: DemoUser[] = [
  { id: "alice", name: "Alice" },
  { id: "bob", name: "Bob" },
  { id: "carol", name: "Carol" },
];

/** Every demo user signs in with this password. */
export const DEMO_PASSWORD = "demo";

export function findUser(id: string): DemoUser | undefined {
  return USERS.find((u) => u.id === id);
}
