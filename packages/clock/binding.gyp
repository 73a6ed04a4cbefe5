{
  "targets": [
    {
      "target_name": "wrenn_clock",
      "sources": ["src/clock.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
