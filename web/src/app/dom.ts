// A few DOM helpers: the demo needs no framework.

type Child = Node | string | number | null | undefined | false;

/** Known drops index signatures (HTMLFormElement has one) so props type-check. */
type Known<T> = { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] };

/** Props are element properties, plus `class`, `data` (dataset) and `on` (listeners). */
export type Props<K extends keyof HTMLElementTagNameMap> = Partial<Omit<Known<HTMLElementTagNameMap[K]>, "style">> & {
  class?: string;
  data?: Record<string, string>;
  style?: string;
  on?: Partial<{ [E in keyof HTMLElementEventMap]: (ev: HTMLElementEventMap[E]) => void }>;
  attrs?: Record<string, string>;
};

/** h creates an element with props and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props<K> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  const { class: cls, data, style, on, attrs, ...rest } = props;
  if (cls) el.className = cls;
  if (style) el.setAttribute("style", style);
  for (const [k, v] of Object.entries(data ?? {})) el.dataset[k] = v;
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, v);
  for (const [k, v] of Object.entries(on ?? {})) el.addEventListener(k, v as EventListener);
  Object.assign(el, rest);
  append(el, children);
  return el;
}

/** append adds children, skipping empty ones. */
export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** replace swaps an element's children. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** View is a page: its root element and what to stop when it goes. */
export interface View {
  el: HTMLElement;
  dispose(): void;
}

/**
 * reconcile makes el's children exactly nodes, in order, moving only what
 * is out of place: prepending a page of older messages to a long list
 * inserts those, instead of re-inserting (and re-laying out) every child.
 */
export function reconcile(el: Element, nodes: Node[]): void {
  let cur = el.firstChild;
  for (const node of nodes) {
    if (node === cur) {
      cur = cur.nextSibling;
      continue;
    }
    el.insertBefore(node, cur);
  }
  while (cur) {
    const next = cur.nextSibling;
    cur.remove();
    cur = next;
  }
}
