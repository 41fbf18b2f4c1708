// Sign-in through Auth.js's credentials provider, from a server action.

import { AuthError } from "next-auth";
import { redirect } from "next/navigation";

import { signIn } from "@/auth";
import { DEMO_PASSWORD, USERS } from "@/lib/users";

async function signInAction(form: FormData) {
  "use server";
  try {
    await signIn("credentials", {
      username: form.get("username"),
      password: form.get("password"),
      redirectTo: "/chat",
    });
  } catch (e) {
    // signIn redirects by throwing; only a refusal is ours to handle.
    if (e instanceof AuthError) redirect("/signin?error=1");
    throw e;
  }
}

export default async function SignIn({ searchParams }: { searchParams: Promise<{ error?: string }> }) {
  const { error } = await searchParams;
  return (
    <main className="signin">
      <h1>Sign in</h1>
      <form action={signInAction}>
        <label>
          User
          <select name="username" defaultValue={USERS[0]?.id}>
            {USERS.map((u) => (
              <option key={u.id} value={u.id}>
                {u.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" required />
        </label>
        {error && <p role="alert">That user and password don't match.</p>}
        <button type="submit">Sign in</button>
      </form>
      <p className="hint">
        Demo users: {USERS.map((u) => u.name).join(", ")}; the password is <code>{DEMO_PASSWORD}</code>.
      </p>
    </main>
  );
}
