{
  "targets": [
    {
      "target_name": "wrenn-setuser",
      "type": "executable",
      "sources": ["src/setuser.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "ldflags": ["-static", "-s"]
    }
  ]
}
