// Token mode (a secret configured, no "sign in as"): a token that won't work is refused on the
// sign-in form, in words, before the app opens; and a link with `#token=…` works in a tab that
// is already on the page (the browser only fires `hashchange` there, it doesn't reload).

import { expect, test } from "vitest";

import { token } from "../../clients/js/test/server.js";
import { expectAccessible, PHONE, shot, suite } from "./people.js";

const s = suite({});

test("a token that won't work is refused on the sign-in form, saying why", async () => {
  const p = await s.person(PHONE);
  await p.page.goto(s.server.url);
  const form = p.page.getByRole("form", { name: "Sign in" });
  const alert = form.getByRole("alert");
  const tries: [string, RegExp][] = [
    ["not a token at all", /doesn't look like a token/],
    [await token("eve", { secret: "some-other-secret-0123456789" }), /wasn't accepted/],
    [await token("eve", { ttlSecs: -60 }), /has expired/],
  ];
  for (const [value, said] of tries) {
    await form.getByLabel("Token").fill(value);
    await form.getByRole("button", { name: "Connect" }).click();
    await alert.filter({ hasText: said }).waitFor();
    // Still on the form: the app (and its connection) never started.
    expect(await p.page.getByRole("button", { name: "New chat" }).count()).toBe(0);
    expect(await alert.innerText()).not.toMatch(/unauthorized|invalid_payload|token:/);
  }
  await shot(p, "signin-refused-phone");
  await expectAccessible(p, "sign-in form with an error");

  await form.getByLabel("Token").fill(await token("erin", { name: "Erin" }));
  await form.getByRole("button", { name: "Connect" }).click();
  await p.page.getByRole("button", { name: "New chat" }).waitFor();
  await p.page.getByText("Erin", { exact: true }).first().waitFor();
  expect(p.errors).toEqual([]);
});

test("a #token= link opened in a tab already on the page signs in, and switches user", async () => {
  const p = await s.person(undefined);
  await p.page.goto(s.server.url);
  await p.page.getByRole("form", { name: "Sign in" }).waitFor();
  // Same document, new fragment: no reload, only `hashchange`.
  await p.page.goto(`${s.server.url}/#token=${await token("dana", { name: "Dana" })}`);
  await p.page.getByRole("button", { name: "New chat" }).waitFor();
  await p.page.getByText("Dana", { exact: true }).first().waitFor();
  expect(new URL(p.page.url()).hash).toBe("");

  // Another link, for someone else, in the same tab: now that person.
  await p.page.goto(`${s.server.url}/#token=${await token("gil", { name: "Gil" })}`);
  await p.page.getByText("Gil", { exact: true }).first().waitFor();
  expect(await p.page.getByText("Dana", { exact: true }).count()).toBe(0);
  expect(new URL(p.page.url()).hash).toBe("");
  expect(p.errors).toEqual([]);
});

test("a link with a bad token lands on the sign-in form, saying why", async () => {
  const p = await s.person(undefined);
  await p.page.goto(`${s.server.url}/#token=${await token("eve", { ttlSecs: -60 })}`);
  const form = p.page.getByRole("form", { name: "Sign in" });
  await form.getByRole("alert").filter({ hasText: /has expired/ }).waitFor();
  expect(await p.page.getByRole("button", { name: "New chat" }).count()).toBe(0);
  expect(new URL(p.page.url()).hash).toBe("");
});
