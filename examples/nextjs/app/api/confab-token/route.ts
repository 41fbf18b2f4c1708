// Mints the confab token for the signed-in user: HS256 with CONFAB_JWT_SECRET, the secret this
// app shares with confab (a dedicated one, not AUTH_SECRET). 15 minutes is plenty: the client
// asks for a fresh token before this one runs out.

import { SignJWT } from "jose";

import { auth } from "@/auth";

export async function GET(): Promise<Response> {
  const session = await auth();
  const user = session?.user;
  if (!user?.id) {
    return Response.json({ error: "not signed in" }, { status: 401 });
  }
  const secret = process.env.CONFAB_JWT_SECRET;
  if (!secret) throw new Error("CONFAB_JWT_SECRET is not set");
  const token = await new SignJWT({ name: user.name ?? undefined })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(user.id)
    .setIssuedAt()
    .setExpirationTime("15m")
    .sign(new TextEncoder().encode(secret));
  // Never cached: each call must give a fresh token.
  return Response.json({ token }, { headers: { "cache-control": "no-store" } });
}
