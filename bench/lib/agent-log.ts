/**
 * A host agent's logger for benchmarks that read the agent's own timings:
 * every record goes to `onRecord` as it is written (pino writes
 * synchronously, so a call's records are in before its answer), and
 * warnings and errors also to stderr.
 */
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

export interface AgentLogRecord {
  level: number;
  msg: string;
  step?: string;
  ms?: number;
}

export function agentLog(onRecord: (rec: AgentLogRecord) => void): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        const rec = JSON.parse(line) as AgentLogRecord;
        onRecord(rec);
        if (rec.level >= 40) process.stderr.write(line + "\n");
      }
      done();
    },
  });
  return pino({ name: "host-agent", level: "info" }, sink);
}
