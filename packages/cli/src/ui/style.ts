import { styleText } from "node:util";

type Format = Parameters<typeof styleText>[0];

/**
 * Colour only where a person reads it: styleText drops the codes when the
 * stream is not a TTY or NO_COLOR is set (and adds them for FORCE_COLOR).
 */
export function paint(format: Format, text: string, stream: NodeJS.WriteStream = process.stdout) {
  return styleText(format, text, { stream });
}

const STATUS_COLOURS: Record<string, Format> = {
  running: "green",
  paused: "yellow",
  pending: "cyan",
  error: "red",
  unknown: "magenta",
  stopped: "gray",
};

export function status(s: string): string {
  return paint(STATUS_COLOURS[s] ?? "white", s);
}
