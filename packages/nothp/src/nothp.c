/*
 * wrenn-nothp FILE [ARG...]
 *
 * Turns transparent huge pages off for itself and what it runs
 * (prctl PR_SET_THP_DISABLE, which execve and fork keep), then execs FILE,
 * looked up on PATH as a shell does. The agent starts QEMU under TCG
 * through it: QEMU asks for huge pages on its translation cache and on
 * every RAM block it allocates, so each VMM's last, partly used piece of
 * its code buffer and its 4 KiB ACPI table block took a whole 2 MiB page:
 * ≈ 3 MiB a VMM, measured here, with no change in its CPU time.
 *
 * A kernel that refuses the prctl is reported on stderr and FILE runs
 * anyway (the pages cost memory, not correctness). Exit status 127 when
 * FILE does not exist, 126 when it cannot be run, 2 without FILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs("usage: wrenn-nothp FILE [ARG...]\n", stderr);
    return 2;
  }
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) {
    fprintf(stderr, "wrenn-nothp: huge pages stay on: %s\n", strerror(errno));
  }
  execvp(argv[1], argv + 1);
  int err = errno;
  fprintf(stderr, "wrenn-nothp: %s: %s\n", argv[1], strerror(err));
  return err == ENOENT ? 127 : 126;
}
