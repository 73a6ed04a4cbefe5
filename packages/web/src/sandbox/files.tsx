import { useRef, useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, downloadFile, uploadFile, type DirEntry } from "../api.ts";
import { Card, ErrorBox, Skeleton, bytes } from "../ui.tsx";

function join(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name}`;
}

function parent(dir: string): string {
  const p = dir.replace(/\/+$/, "").split("/").slice(0, -1).join("/");
  return p === "" ? "/" : p;
}

export function Files({ id, running }: { id: string; running: boolean }) {
  const qc = useQueryClient();
  const [dir, setDir] = useState("/home/user");
  const [typed, setTyped] = useState(dir);
  const [progress, setProgress] = useState<{ name: string; pct: number } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [folder, setFolder] = useState("");
  const fileInput = useRef<HTMLInputElement>(null);
  const list = useQuery({
    queryKey: ["files", id, dir],
    queryFn: () => api.list(id, dir),
    enabled: running,
  });
  const refresh = () => qc.invalidateQueries({ queryKey: ["files", id, dir] });
  const open = (path: string) => {
    setDir(path);
    setTyped(path);
  };
  const act = async (fn: () => Promise<unknown>) => {
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(err);
    }
  };
  const upload = (files: FileList | null) =>
    act(async () => {
      for (const file of Array.from(files ?? [])) {
        setProgress({ name: file.name, pct: 0 });
        await uploadFile(id, join(dir, file.name), file, (sent, total) =>
          setProgress({ name: file.name, pct: total ? Math.round((100 * sent) / total) : 0 }),
        );
      }
      setProgress(null);
      if (fileInput.current) fileInput.current.value = "";
      await refresh();
    }).finally(() => setProgress(null));
  const download = (e: DirEntry) =>
    act(async () => {
      setProgress({ name: e.name, pct: 0 });
      const blob = await downloadFile(id, e.path, (n) =>
        setProgress({ name: e.name, pct: e.size ? Math.round((100 * n) / e.size) : 100 }),
      );
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = e.name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setProgress(null);
    });
  if (!running)
    return <Card title="Files">The sandbox is not running: resume it to browse its files.</Card>;
  return (
    <Card title="Files">
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          open(typed || "/");
        }}
      >
        <button
          type="button"
          onClick={() => open(parent(dir))}
          disabled={dir === "/"}
          aria-label="parent directory"
        >
          ↑
        </button>
        <input
          aria-label="path"
          className="grow"
          value={typed}
          onChange={(e) => setTyped(e.target.value)}
        />
        <button type="submit">Go</button>
      </form>
      <div className="row">
        <label className="button">
          Upload
          <input
            ref={fileInput}
            type="file"
            multiple
            className="sr-only"
            aria-label="upload"
            onChange={(e) => void upload(e.target.files)}
          />
        </label>
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (!folder) return;
            void act(async () => {
              await api.mkdir(id, join(dir, folder));
              setFolder("");
              await refresh();
            });
          }}
        >
          <input
            aria-label="new folder"
            placeholder="new folder"
            value={folder}
            onChange={(e) => setFolder(e.target.value)}
          />
          <button type="submit">Create folder</button>
        </form>
      </div>
      {progress && (
        <div
          className="progress"
          role="progressbar"
          aria-valuenow={progress.pct}
          aria-label={`transfer of ${progress.name}`}
        >
          <div style={{ width: `${progress.pct}%` }} />
          <span>
            {progress.name} {progress.pct}%
          </span>
        </div>
      )}
      <ErrorBox error={error ?? list.error} />
      {list.isPending ? (
        <Skeleton rows={4} />
      ) : (
        <div className="table-wrap">
          <table className="files">
            <thead>
              <tr>
                <th>Name</th>
                <th>Size</th>
                <th className="hide-sm">Modified</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {(list.data ?? []).map((e) => (
                <tr key={e.path} data-file={e.name}>
                  <td>
                    {e.type === "dir" ? (
                      <button className="link" onClick={() => open(e.path)}>
                        {e.name}/
                      </button>
                    ) : (
                      <span>{e.name}</span>
                    )}
                  </td>
                  <td>{e.type === "dir" ? "" : bytes(e.size)}</td>
                  <td className="hide-sm">{new Date(e.modified_at).toLocaleString()}</td>
                  <td className="row end">
                    {e.type === "file" && (
                      <button onClick={() => void download(e)}>Download</button>
                    )}
                    <button
                      className="danger"
                      onClick={() => {
                        if (!confirm(`Delete ${e.path}?`)) return;
                        void act(async () => {
                          await api.remove(id, e.path);
                          await refresh();
                        });
                      }}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
              {list.data?.length === 0 && (
                <tr>
                  <td colSpan={4} className="muted">
                    (empty)
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </Card>
  );
}
