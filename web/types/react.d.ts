// `react` is Preact's compat layer in this app (see build.mjs). These are the parts of React's
// API that @confab/client/react uses, typed from Preact. React's useSyncExternalStore takes a
// third argument (getServerSnapshot, for server rendering) that Preact's types lack; Preact
// ignores it at run time.
import type { ComponentChildren } from "preact";

export { createContext, createElement, useContext, useEffect, useMemo, useState } from "preact/compat";
export type ReactNode = ComponentChildren;
export function useSyncExternalStore<T>(
  subscribe: (onChange: () => void) => () => void,
  getSnapshot: () => T,
  getServerSnapshot?: () => T,
): T;
