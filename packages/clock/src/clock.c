// setRealtime(ms): clock_settime(CLOCK_REALTIME) for envd's /init. Spawning
// `date -s` instead forks a ~50 MB Node process, which costs hundreds of
// milliseconds in a TCG guest on every create and resume.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <node_api.h>

static napi_value throw_errno(napi_env env, int err) {
  char message[160];
  snprintf(message, sizeof message, "clock_settime(CLOCK_REALTIME): %s", strerror(err));
  napi_value code, msg, error;
  // Node's own errno codes, so callers can tell EPERM (not root) apart.
  const char *name = err == EPERM ? "EPERM" : err == EINVAL ? "EINVAL" : "ECLOCK";
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
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) return throw_errno(env, errno);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "setRealtime", NAPI_AUTO_LENGTH, set_realtime, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "setRealtime", fn) != napi_ok) {
    return NULL;
  }
  return exports;
}
