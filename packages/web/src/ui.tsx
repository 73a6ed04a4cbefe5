import { useRef, useState, type AnchorHTMLAttributes, type ReactNode } from "react";
import { ApiError } from "./api.ts";
import { navigate } from "./router.ts";

export { age, duration, timeLeft, until } from "./format.ts";

export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const { href, onClick, ...rest } = props;
  return (
    <a
      {...rest}
      href={href}
      onClick={(e) => {
        onClick?.(e);
        if (e.defaultPrevented || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(href);
      }}
    />
  );
}

/** An error shown where it happened, with the API's code when there is one. */
export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ApiError ? error.code : null;
  return (
    <div className="error" role="alert">
      {code && <code>{code}</code>} {message}
    </div>
  );
}

export function Status({ status }: { status: string }) {
  return <span className={`status status-${status}`}>{status}</span>;
}

export function Card({
  title,
  actions,
  children,
}: {
  title?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
}) {
  return (
    <section className="card">
      {(title || actions) && (
        <header className="card-head">
          {title && <h2>{title}</h2>}
          {actions && <div className="row">{actions}</div>}
        </header>
      )}
      {children}
    </section>
  );
}

/** Placeholder rows of a fixed height, so tables do not jump when data arrives. */
export function Skeleton({ rows = 3 }: { rows?: number }) {
  return (
    <div aria-busy="true" aria-label="loading">
      {Array.from({ length: rows }, (_, i) => (
        <div key={i} className="skeleton" />
      ))}
    </div>
  );
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** A sandbox's metadata as small key=value labels. */
export function Labels({ metadata }: { metadata: Record<string, string> }) {
  const entries = Object.entries(metadata);
  if (entries.length === 0) return null;
  return (
    <span className="labels">
      {entries.map(([k, v]) => (
        <span key={k} className="label" title={`${k}=${v}`}>
          {k}={v}
        </span>
      ))}
    </span>
  );
}

/**
 * A secret shown once, with a copy button. The clipboard API exists only in
 * secure contexts (https, localhost): elsewhere, or when it is refused, the
 * text is selected so Ctrl+C copies it.
 */
export function Secret({ text, testId }: { text: string; testId: string }) {
  const [state, setState] = useState<"idle" | "copied" | "selected">("idle");
  const ref = useRef<HTMLElement>(null);
  const select = () => {
    const el = ref.current;
    const sel = window.getSelection();
    if (!el || !sel) return;
    sel.selectAllChildren(el);
    setState("selected");
  };
  return (
    <div className="row">
      <code ref={ref} data-testid={testId} className="select-all">
        {text}
      </code>
      <button
        type="button"
        onClick={() => {
          if (!navigator.clipboard) return select();
          navigator.clipboard.writeText(text).then(() => setState("copied"), select);
        }}
      >
        {state === "copied" ? "Copied" : state === "selected" ? "Press Ctrl+C" : "Copy"}
      </button>
    </div>
  );
}
