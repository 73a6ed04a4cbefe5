import { useQuery } from "@tanstack/react-query";
import { api, type MetricSample } from "../api.ts";
import { Card, ErrorBox, bytes } from "../ui.tsx";

function Spark({
  values,
  max,
  label,
  value,
}: {
  values: number[];
  max: number;
  label: string;
  value: string;
}) {
  const w = 240;
  const h = 56;
  const pts = values.map(
    (v, i) =>
      `${(i / Math.max(1, values.length - 1)) * w},${h - (Math.min(v, max) / (max || 1)) * (h - 4) - 2}`,
  );
  return (
    <figure className="spark">
      <figcaption>
        {label} <b>{value}</b>
      </figcaption>
      <svg
        viewBox={`0 0 ${w} ${h}`}
        width="100%"
        height={h}
        role="img"
        aria-label={`${label} ${value}`}
      >
        <rect x="0" y="0" width={w} height={h} className="spark-bg" />
        {pts.length > 1 && <polyline points={pts.join(" ")} className="spark-line" />}
      </svg>
    </figure>
  );
}

export function Metrics({ id, running }: { id: string; running: boolean }) {
  const q = useQuery({
    queryKey: ["metrics", id],
    queryFn: () => api.metrics(id),
    refetchInterval: 5000,
    enabled: running,
    retry: false,
  });
  const m: MetricSample[] = q.data ?? [];
  const last = m.at(-1);
  return (
    <Card title="Metrics">
      {!running && <p className="muted">The sandbox is not running.</p>}
      <ErrorBox error={q.error} />
      {running && !q.error && m.length === 0 && <p className="muted">No samples yet.</p>}
      {last && (
        <div className="sparks">
          <Spark
            label="CPU"
            values={m.map((s) => s.cpu_used_pct)}
            max={100}
            value={`${last.cpu_used_pct.toFixed(1)}% of ${last.cpu_count}`}
          />
          <Spark
            label="Memory"
            values={m.map((s) => s.mem_used_bytes)}
            max={last.mem_total_bytes}
            value={`${bytes(last.mem_used_bytes)} / ${bytes(last.mem_total_bytes)}`}
          />
          <Spark
            label="Disk"
            values={m.map((s) => s.disk_used_bytes)}
            max={last.disk_total_bytes}
            value={`${bytes(last.disk_used_bytes)} / ${bytes(last.disk_total_bytes)}`}
          />
        </div>
      )}
    </Card>
  );
}
