{
  "targets": [
    {
      "target_name": "wrenn-nothp",
      "type": "executable",
      "sources": ["src/nothp.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "ldflags": ["-s"]
    }
  ]
}
