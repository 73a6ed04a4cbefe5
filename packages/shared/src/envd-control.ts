/**
 * envd's control channel (packages/envd/src/control.ts): the host agent
 * upgrades a connection to envd's port with `GET CONTROL_PATH` and
 * `Upgrade: CONTROL_PROTOCOL`, then sends lines of JSON.
 */
export const CONTROL_PATH = "/control";
export const CONTROL_PROTOCOL = "wrenn-control";
