/**
 * Removes the tests' boot snapshots (TEST_BOOT_SNAPSHOT_DIR) of an image or
 * kernel that is no longer current, made over an hour ago: every image
 * change leaves one per shape behind, and on a machine where the suite runs
 * often they came to tens of GiB. The hour spares a run of another checkout
 * that is using its own right now. Run by scripts/test.sh after the image build.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { removeUnused, staleBootSnapshots } from "../src/image/prune.ts";
import { dataDir } from "../src/image/store.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "./test-dirs.ts";

const HOUR_MS = 3_600_000;

const stale = [];
for (const l of await staleBootSnapshots(TEST_BOOT_SNAPSHOT_DIR, dataDir())) {
  const made = await stat(join(l.path, "meta.json")).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  if (Date.now() - made > HOUR_MS) stale.push(l);
}
const freed = await removeUnused(stale);
console.log(
  `tests' boot snapshots: ${stale.length} of an old image or kernel removed (${(freed / 2 ** 30).toFixed(1)} GiB)`,
);
