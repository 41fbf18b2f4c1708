// A modal dialog on the browser's own <dialog>: `showModal()` makes the rest of the page inert
// (focus can't leave it, screen readers read only it: `aria-modal` in effect), puts focus inside,
// and closes on Escape. We add what unmounting loses: focus goes back to where it was.

import type { ComponentChildren } from "preact";
import { useEffect, useId, useRef } from "preact/hooks";

export function Dialog(props: {
  title: string;
  /** The dialog's name, when its title says more (a count, say). Default: the title. */
  label?: string;
  onClose: () => void;
  children: ComponentChildren;
  /** Where focus goes back to on close; default: what had it when the dialog opened. */
  returnFocus?: () => HTMLElement | null | undefined;
  class?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const onClose = useRef(props.onClose);
  onClose.current = props.onClose;
  const returnFocus = useRef(props.returnFocus);
  returnFocus.current = props.returnFocus;

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    dialog.showModal();
    // Escape: the browser fires `cancel`; we close through the owner, which unmounts us.
    const cancel = (e: Event) => {
      e.preventDefault();
      onClose.current();
    };
    // A click on the backdrop lands on the <dialog> itself, outside its box.
    const click = (e: MouseEvent) => {
      if (e.target !== dialog) return;
      const r = dialog.getBoundingClientRect();
      const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
      if (!inside) onClose.current();
    };
    dialog.addEventListener("cancel", cancel);
    dialog.addEventListener("click", click);
    return () => {
      dialog.removeEventListener("cancel", cancel);
      dialog.removeEventListener("click", click);
      if (dialog.open) dialog.close();
      const target = returnFocus.current?.() ?? opener;
      if (target?.isConnected) target.focus();
    };
  }, []);

  return (
    <dialog ref={ref} class={`dialog${props.class ? ` ${props.class}` : ""}`} aria-labelledby={props.label ? undefined : titleId} aria-label={props.label}>
      <h2 id={titleId}>{props.title}</h2>
      {props.children}
    </dialog>
  );
}
