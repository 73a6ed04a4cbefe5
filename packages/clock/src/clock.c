// The guest kernel calls envd's /init makes, without forking a process
// (spawning `date -s` forks a ~50 MB Node process, which costs hundreds of
// milliseconds in a TCG guest on every create and resume):
//   setRealtime(ms)     clock_settime(CLOCK_REALTIME): a resumed guest's clock
//                       is as old as its snapshot.
//   reseedRandom(bytes) RNDADDENTROPY + RNDRESEEDCRNG on /dev/urandom: clones
//                       restored from one memory snapshot share the kernel's
//                       CRNG state until it next reseeds (up to a minute).
#include <errno.h>
#include <fcntl.h>
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

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "setRealtime", NAPI_AUTO_LENGTH, set_realtime, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "setRealtime", fn) != napi_ok ||
      napi_create_function(env, "reseedRandom", NAPI_AUTO_LENGTH, reseed_random, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "reseedRandom", fn) != napi_ok) {
    return NULL;
  }
  return exports;
}
