import { InvalidArgumentError } from "commander";

/** An integer option within bounds; commander turns the throw into a one-line error. */
export function int(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}.`);
    }
    return n;
  };
}

/** Repeated KEY=VALUE options into one record. */
export function keyValue(value: string, previous: Record<string, string> | undefined) {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError("expected KEY=VALUE.");
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

export function sandboxId(value: string): string {
  if (!/^[a-z0-9]{1,64}$/.test(value)) {
    throw new InvalidArgumentError(
      "sandbox ids are lowercase letters and digits ('wrenn sandbox ls' lists them).",
    );
  }
  return value;
}
