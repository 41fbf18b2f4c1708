// Auth.js (NextAuth v5): a credentials provider with the demo users, sessions in a JWT cookie.
// The session's `user.id` is the user's id, which the confab token route puts in `sub`.

import NextAuth, { CredentialsSignin } from "next-auth";
import Credentials from "next-auth/providers/credentials";

import { DEMO_PASSWORD, findUser } from "@/lib/users";

export const { handlers, auth, signIn, signOut } = NextAuth({
  providers: [
    Credentials({
      credentials: { username: { label: "User" }, password: { label: "Password", type: "password" } },
      authorize: async (credentials) => {
        const user = typeof credentials.username === "string" ? findUser(credentials.username) : undefined;
        if (!user || credentials.password !== DEMO_PASSWORD) throw new CredentialsSignin();
        return { id: user.id, name: user.name };
      },
    }),
  ],
  session: { strategy: "jwt" },
  pages: { signIn: "/signin" },
  callbacks: {
    // The JWT strategy keeps the user id in `token.sub`; hand it to the session.
    session: ({ session, token }) => {
      if (token.sub) session.user.id = token.sub;
      return session;
    },
  },
});
