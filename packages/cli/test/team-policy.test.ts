import { test } from "node:test";
import assert from "node:assert/strict";
import { parseTeamQuota, teamPolicyOptions } from "../src/commands/team-policy.ts";

test("--team-quota and --open-signup become the control plane's options; bad quotas are one clear error", () => {
  assert.deepEqual(parseTeamQuota("sandboxes=20,vcpus=40,memory_mb=81920,disk_mb=1048576"), {
    sandboxes: 20,
    vcpus: 40,
    memoryMb: 81920,
    diskMb: 1048576,
  });
  assert.deepEqual(teamPolicyOptions({ "team-quota": "vcpus=8" }), {
    openSignup: false,
    teamQuota: { vcpus: 8 },
  });
  assert.deepEqual(teamPolicyOptions({ "open-signup": true }), { openSignup: true });
  for (const bad of ["gpus=1", "vcpus=-1", "vcpus=1.5", "vcpus", "disk_mb=99999999999"]) {
    assert.throws(() => parseTeamQuota(bad), /--team-quota takes NAME=N/, bad);
  }
});
