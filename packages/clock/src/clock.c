// The guest kernel calls envd's /init makes, without forking a process
// (spawning `date -s` forks a ~50 MB Node process, which costs hundreds of
// milliseconds in a TCG guest on every create and resume):
//   setRealtime(ms)     clock_settime(CLOCK_REALTIME): a resumed guest's clock
//                       is as old as its snapshot.
//   reseedRandom(bytes) RNDADDENTROPY + RNDRESEEDCRNG on /dev/urandom: clones
//                       restored from one memory snapshot share the kernel's
//                       CRNG state until it next reseeds (up to a minute).
//   setHostname(name)   sethostname(2): each sandbox restored from a snapshot
//                       carries the name it was saved with.
//   recordHostname(etc, name)
//                       <etc>/hostname and the 127.0.1.1 line of <etc>/hosts.
//                       In C rather than through node:fs: under the guest's
//                       TCG interpreter Node's fs layer cost a claim's /init
//                       ≈ 2 ms of its VMM for three small files.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <linux/random.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>

/** Enough for any caller; the kernel folds whatever it gets into its pool. */
#define MAX_ENTROPY_BYTES 4096
/** The kernel's limit on its host name (__NEW_UTS_LEN). */
#define MAX_KERNEL_NAME 64
/** A DNS name's limit: what /etc/hostname and /etc/hosts may hold. */
#define MAX_NAME 253
/** A hosts file larger than this is not one recordHostname rewrites. */
#define MAX_HOSTS_BYTES (1024 * 1024)

// Node's own errno codes, so callers can tell EPERM (not privileged) apart.
static const char *errno_name(int err, const char *fallback) {
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENOTTY: return "ENOTTY";
    case ENODATA: return "ENODATA";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    case EROFS: return "EROFS";
    case ENOSPC: return "ENOSPC";
    case EFBIG: return "EFBIG";
    default: return fallback;
  }
}

static napi_value throw_errno(napi_env env, const char *call, int err, const char *fallback) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", call, strerror(err));
  const char *name = errno_name(err, fallback);
  napi_value code, msg, error;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
      napi_create_error(env, code, msg, &error) != napi_ok) {
    napi_throw_error(env, name, message);
    return NULL;
  }
  napi_value errnoValue;
  if (napi_create_int32(env, -err, &errnoValue) == napi_ok) {
    napi_set_named_property(env, error, "errno", errnoValue);
  }
  napi_throw(env, error);
  return NULL;
}

static napi_value set_realtime(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double ms = NAN;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_double(env, argv[0], &ms) != napi_ok || !isfinite(ms) || ms < 0 ||
      ms > 253402300799999.0 /* 9999-12-31T23:59:59.999Z */) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "setRealtime(ms): ms must be a Unix time in milliseconds");
    return NULL;
  }
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  if (ts.tv_nsec > 999999999) ts.tv_nsec = 999999999;
  if (clock_settime(CLOCK_REALTIME, &ts) != 0)
    return throw_errno(env, "clock_settime(CLOCK_REALTIME)", errno, "ECLOCK");
  return NULL;
}

// struct rand_pool_info with room for the bytes (its buf is a flexible array).
struct entropy_pool {
  int entropy_count;
  int buf_size;
  unsigned char buf[MAX_ENTROPY_BYTES];
};

static napi_value reseed_random(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool isTyped = false;
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_is_typedarray(env, argv[0], &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "reseedRandom(bytes): bytes must be a Uint8Array");
    return NULL;
  }
  if (length < 1 || length > MAX_ENTROPY_BYTES) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "reseedRandom(bytes): bytes must hold 1 to 4096 bytes");
    return NULL;
  }
  struct entropy_pool pool;
  // Credited in full: the caller hands over bytes from a CSPRNG (the host's).
  pool.entropy_count = (int)length * 8;
  pool.buf_size = (int)length;
  memcpy(pool.buf, data, length);
  const char *call = "open(/dev/urandom)";
  int err = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
  } else {
    call = "ioctl(/dev/urandom, RNDADDENTROPY)";
    if (ioctl(fd, RNDADDENTROPY, &pool) != 0) {
      err = errno;
    } else {
      // Without this the new bytes reach /dev/urandom only at the kernel's
      // next periodic reseed; until then every clone reads the same stream.
      call = "ioctl(/dev/urandom, RNDRESEEDCRNG)";
      if (ioctl(fd, RNDRESEEDCRNG) != 0) err = errno;
    }
    close(fd);
  }
  explicit_bzero(pool.buf, length);
  if (err != 0) return throw_errno(env, call, err, "ERANDOM");
  return NULL;
}

/**
 * Reads argument `v` as a string of 1 to `max` bytes into `buf` (which
 * holds `max` + 1); false if it is not one or holds a NUL.
 */
static bool string_arg(napi_env env, napi_value v, char *buf, size_t max, size_t *len) {
  napi_valuetype type = napi_undefined;
  size_t n = 0;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_string ||
      napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok || n < 1 || n > max ||
      napi_get_value_string_utf8(env, v, buf, max + 1, &n) != napi_ok ||
      memchr(buf, '\0', n) != NULL) {
    return false;
  }
  *len = n;
  return true;
}

/** Letters, digits, dots and hyphens only: nothing that could break a line of /etc/hosts. */
static bool host_chars(const char *name, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

static napi_value set_hostname(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[MAX_KERNEL_NAME + 1];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      !string_arg(env, argv[0], name, MAX_KERNEL_NAME, &len) || !host_chars(name, len)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "setHostname(name): name must be 1 to 64 letters, digits, dots or hyphens");
    return NULL;
  }
  if (sethostname(name, len) != 0) return throw_errno(env, "sethostname", errno, "EHOSTNAME");
  return NULL;
}

/** Writes all `len` bytes of `data` to `path`, made or truncated; 0 or an errno. */
static int write_file(const char *path, const char *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  for (size_t done = 0; done < len;) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += (size_t)n;
  }
  if (close(fd) != 0 && err == 0) err = errno;
  return err;
}

/**
 * Reads `path` into a malloc'd buffer (NUL-terminated; *len bytes); NULL with
 * *err set on failure (ENOENT: there is none; EFBIG: over MAX_HOSTS_BYTES).
 */
static char *read_file(const char *path, size_t *len, int *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return NULL;
  }
  char *buf = malloc(MAX_HOSTS_BYTES + 1);
  size_t size = 0;
  *err = buf == NULL ? ENOMEM : 0;
  while (*err == 0) {
    ssize_t n = read(fd, buf + size, MAX_HOSTS_BYTES + 1 - size);
    if (n < 0) {
      if (errno != EINTR) *err = errno;
    } else if (n == 0) {
      break;
    } else if ((size += (size_t)n) > MAX_HOSTS_BYTES) {
      *err = EFBIG;
    }
  }
  close(fd);
  if (*err != 0) {
    free(buf);
    return NULL;
  }
  buf[size] = '\0';
  *len = size;
  return buf;
}

/**
 * `hosts` with its first 127.0.1.1 line naming `name` (added at the end when
 * it has none), as Debian keeps it: `sudo` and `hostname -f` resolve the
 * name through it. A malloc'd buffer of *out_len bytes, or NULL.
 */
static char *with_loopback_name(const char *hosts, size_t len, const char *name, size_t name_len,
                                size_t *out_len) {
  static const char prefix[] = "127.0.1.1";
  const size_t plen = sizeof prefix - 1;
  char *out = malloc(len + plen + name_len + 3);
  if (out == NULL) return NULL;
  size_t at = 0;
  bool named = false;
  for (size_t start = 0; start < len;) {
    const char *nl = memchr(hosts + start, '\n', len - start);
    size_t end = nl ? (size_t)(nl - hosts) : len;
    size_t line = end - start;
    if (!named && line > plen && memcmp(hosts + start, prefix, plen) == 0 &&
        (hosts[start + plen] == ' ' || hosts[start + plen] == '\t')) {
      named = true;
      memcpy(out + at, prefix, plen);
      at += plen;
      out[at++] = '\t';
      memcpy(out + at, name, name_len);
      at += name_len;
    } else {
      memcpy(out + at, hosts + start, line);
      at += line;
    }
    if (nl) out[at++] = '\n';
    start = end + 1;
  }
  if (!named) {
    if (len == 0 || hosts[len - 1] != '\n') out[at++] = '\n';
    memcpy(out + at, prefix, plen);
    at += plen;
    out[at++] = '\t';
    memcpy(out + at, name, name_len);
    at += name_len;
    if (len > 0 && hosts[len - 1] == '\n') out[at++] = '\n';
  }
  *out_len = at;
  return out;
}

static napi_value record_hostname(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char etc[PATH_MAX - 15];
  char name[MAX_NAME + 1];
  size_t etc_len = 0, len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      !string_arg(env, argv[0], etc, PATH_MAX - 16, &etc_len) ||
      !string_arg(env, argv[1], name, MAX_NAME, &len) || !host_chars(name, len)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "recordHostname(etc, name): etc must be a path, name 1 to 253 letters, "
                           "digits, dots or hyphens");
    return NULL;
  }
  char path[PATH_MAX];
  char line[MAX_NAME + 2];
  memcpy(line, name, len);
  line[len] = '\n';
  snprintf(path, sizeof path, "%s/hostname", etc);
  int err = write_file(path, line, len + 1);
  if (err != 0) return throw_errno(env, "writing /etc/hostname", err, "EHOSTNAME");
  snprintf(path, sizeof path, "%s/hosts", etc);
  size_t hosts_len = 0;
  char *hosts = read_file(path, &hosts_len, &err);
  if (hosts == NULL && err != ENOENT) return throw_errno(env, "reading /etc/hosts", err, "EHOSTNAME");
  static const char fresh[] = "127.0.0.1\tlocalhost\n";
  size_t out_len = 0;
  char *out = with_loopback_name(hosts ? hosts : fresh, hosts ? hosts_len : sizeof fresh - 1, name,
                                 len, &out_len);
  free(hosts);
  if (out == NULL) return throw_errno(env, "rewriting /etc/hosts", ENOMEM, "EHOSTNAME");
  err = write_file(path, out, out_len);
  free(out);
  if (err != 0) return throw_errno(env, "writing /etc/hosts", err, "EHOSTNAME");
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "setRealtime", NAPI_AUTO_LENGTH, set_realtime, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "setRealtime", fn) != napi_ok ||
      napi_create_function(env, "reseedRandom", NAPI_AUTO_LENGTH, reseed_random, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "reseedRandom", fn) != napi_ok ||
      napi_create_function(env, "setHostname", NAPI_AUTO_LENGTH, set_hostname, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "setHostname", fn) != napi_ok ||
      napi_create_function(env, "recordHostname", NAPI_AUTO_LENGTH, record_hostname, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "recordHostname", fn) != napi_ok) {
    return NULL;
  }
  return exports;
}
