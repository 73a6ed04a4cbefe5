import { Sandbox } from "../../../sdk/src/index.ts";
import { withSpinner } from "../ui/progress.ts";
import { ago, bytes, table } from "../ui/table.ts";
import { connect, printJson } from "./connect.ts";

export async function list(o: { json?: boolean; type?: "base" | "snapshot" }): Promise<void> {
  const wrenn = await connect();
  const templates = await wrenn.listTemplates(o.type ? { type: o.type } : {});
  if (o.json) {
    printJson(templates);
    return;
  }
  process.stdout.write(
    table(
      ["NAME", "TYPE", "VCPUS", "MEMORY", "SIZE", "CREATED"],
      templates.map((t) => [
        t.name,
        t.type,
        // A base template has no shape of its own: a create gives it one.
        t.vcpus ? String(t.vcpus) : "any",
        t.memory_mb ? `${t.memory_mb} MiB` : "any",
        bytes(t.size_bytes),
        ago(t.created_at),
      ]),
    ),
  );
}

export async function remove(names: string[], o: { json?: boolean }): Promise<void> {
  const wrenn = await connect();
  for (const name of names) {
    await wrenn.deleteTemplate(name);
    if (!o.json) process.stderr.write(`removed template ${name}\n`);
  }
  if (o.json) printJson({ removed: names });
}

export async function snapshot(
  id: string,
  name: string | undefined,
  o: { json?: boolean; overwrite?: boolean },
): Promise<void> {
  const sb = await Sandbox.get(await connect(), id);
  const work = () => sb.snapshot(name, { overwrite: o.overwrite === true });
  const template = o.json ? await work() : await withSpinner(`snapshotting ${id}`, work);
  if (o.json) printJson(template);
  else process.stdout.write(`${template.name}\n`);
  if (!o.json)
    process.stderr.write(
      `template '${template.name}' (${bytes(template.size_bytes)}); ${id} stays paused — 'wrenn sandbox create --template ${template.name}' starts from it\n`,
    );
}
