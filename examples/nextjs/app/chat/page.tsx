// The chat page (a Server Component): signed-in users only. The chat itself runs in the browser
// (ChatApp), connected to confab at NEXT_PUBLIC_CONFAB_URL.

import { redirect } from "next/navigation";

import { auth, signOut } from "@/auth";
import { USERS } from "@/lib/users";

import { ChatApp } from "./ChatApp";

export default async function ChatPage() {
  const session = await auth();
  const user = session?.user;
  if (!user?.id) redirect("/signin");
  const url = process.env.NEXT_PUBLIC_CONFAB_URL;
  if (!url) throw new Error("NEXT_PUBLIC_CONFAB_URL is not set (confab's address, e.g. http://localhost:3001)");
  return (
    <main className="chat">
      <header>
        <h1>confab + Next.js</h1>
        <span>
          Signed in as <strong>{user.name ?? user.id}</strong>
        </span>
        <form
          action={async () => {
            "use server";
            await signOut({ redirectTo: "/signin" });
          }}
        >
          <button type="submit">Sign out</button>
        </form>
      </header>
      <ChatApp url={url} me={user.id} people={USERS.filter((u) => u.id !== user.id)} />
    </main>
  );
}
