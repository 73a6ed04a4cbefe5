import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, type Sandbox } from "./api.ts";

/** Lifecycle actions on one sandbox; each refreshes the lists it changes. */
export function useSandboxActions() {
  const qc = useQueryClient();
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["sandboxes"] });
    void qc.invalidateQueries({ queryKey: ["sandbox"] });
  };
  const put = (sb: Sandbox) => qc.setQueryData(["sandbox", sb.sandbox_id], sb);
  return {
    pause: useMutation({ mutationFn: api.pause, onSuccess: put, onSettled: refresh }),
    resume: useMutation({
      mutationFn: (id: string) => api.resume(id),
      onSuccess: put,
      onSettled: refresh,
    }),
    destroy: useMutation({ mutationFn: api.destroy, onSettled: refresh }),
    ping: useMutation({ mutationFn: api.ping, onSettled: refresh }),
    snapshot: useMutation({
      mutationFn: ({ id, name }: { id: string; name?: string }) => api.snapshot(id, name),
      onSettled: () => {
        refresh();
        void qc.invalidateQueries({ queryKey: ["templates"] });
      },
    }),
  };
}
